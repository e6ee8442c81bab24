"""Prometheus metrics of the web process, plus what all processes share in Redis.

Per-process counters live in a registry owned by the app. At scrape time the Redis
hash `pf:counters` (Plane calls, failures, replays per project, ...) is exposed as
`planeflow_shared_total{name=...}` and `pf:webhooks:last` as
`planeflow_last_webhook_timestamp_seconds{project=...}` (the webhook-loss meter).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

from app.domain.stages import Stage

log = logging.getLogger(__name__)


class SharedCounters(Collector):
    """Reads `pf:counters` and `pf:webhooks:last` from Redis at every scrape."""

    def __init__(self, client: Any, key: str, webhooks_last_key: str = "") -> None:
        self.client = client
        self.key = key
        self.webhooks_last_key = webhooks_last_key

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        shared = CounterMetricFamily(
            "planeflow_shared", "Counters shared by all processes", labels=["name"]
        )
        last = GaugeMetricFamily(
            "planeflow_last_webhook_timestamp_seconds",
            "When the last Plane webhook of a project arrived",
            labels=["project"],
        )
        try:
            for name, value in sorted(self.client.hgetall(self.key).items()):
                shared.add_metric([name], float(value))
            if self.webhooks_last_key:
                for project, when in sorted(self.client.hgetall(self.webhooks_last_key).items()):
                    last.add_metric([project], datetime.fromisoformat(when).timestamp())
        except Exception as exc:  # a scrape must not fail because Redis is down
            log.warning("metrics: cannot read shared counters: %s", exc)
        yield shared
        yield last


QUEUES = ("events", "jobs", "plane", "reconcile")
STAGES = tuple(stage.value for stage in Stage)


class PipelineMetrics(Collector):
    """planeflow's own state, read from Redis at every scrape (so every process, and
    every worker, shows the same): tasks per stage, queue depth per queue (ready and
    delayed), the Plane budget's last reading, and the summaries of job durations per
    stage and of webhook lag (receiver stored → worker started)."""

    def __init__(self, client: Any, keys: Any) -> None:
        self.client = client
        self.keys = keys

    def collect(self) -> Iterator[Any]:
        try:
            yield from self._collect()
        except Exception as exc:  # a scrape must not fail because Redis is down
            log.warning("metrics: cannot read the pipeline state: %s", exc)

    def _collect(self) -> Iterator[Any]:
        r, keys = self.client, self.keys
        tasks = GaugeMetricFamily("planeflow_tasks", "Tasks per stage", labels=["stage"])
        for stage in STAGES:
            tasks.add_metric([stage], float(r.scard(keys.tasks_in_stage(stage))))
        yield tasks
        depth = GaugeMetricFamily(
            "planeflow_queue_depth", "Messages waiting per queue", labels=["queue", "kind"]
        )
        for queue in QUEUES:
            depth.add_metric([queue, "ready"], float(r.llen(f"dramatiq:{queue}")))
            depth.add_metric([queue, "delayed"], float(r.llen(f"dramatiq:{queue}.DQ")))
        yield depth
        state = r.hgetall(f"{keys.plane_rate}:state")
        remaining = GaugeMetricFamily(
            "planeflow_plane_budget_remaining",
            "X-RateLimit-Remaining of Plane's last answer for the default key",
        )
        if state.get("remaining") not in (None, ""):
            remaining.add_metric([], float(state["remaining"]))
        yield remaining
        yield from self._summaries(r.hgetall(keys.observations))

    @staticmethod
    def _summaries(raw: dict[str, str]) -> Iterator[SummaryMetricFamily]:
        families = {
            "job_duration_seconds": SummaryMetricFamily(
                "planeflow_job_duration_seconds", "Stage work per job", labels=["stage"]
            ),
            "webhook_lag_seconds": SummaryMetricFamily(
                "planeflow_webhook_lag_seconds",
                "From the receiver storing a Plane event to a worker starting it",
                labels=["source"],
            ),
        }
        for field, value in raw.items():
            metric, label, part = [*str(field).split("|"), "", "", ""][:3]
            if metric in families and part == "count":
                total = float(raw.get(f"{metric}|{label}|sum", 0))
                families[metric].add_metric([label], count_value=int(value), sum_value=total)
        yield from families.values()


class WebMetrics:
    """The web process's own metrics (no I/O to collect); those it reads from Redis at
    scrape time are `SharedScrape`'s."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.webhooks = WebhookCounts()
        self.registry.register(self.webhooks)
        self.spool_pending = Gauge(
            "planeflow_spool_pending", "Events waiting in the local spool", registry=self.registry
        )
        self.shared_up = Gauge(
            "planeflow_metrics_redis_up",
            "Whether this scrape's Redis-backed metrics were read in time (1) or left out (0)",
            registry=self.registry,
        )

    def count(self, source: str, outcome: str, n: int = 1) -> None:
        self.webhooks.add(source, outcome.split(":", 1)[0], n)


class WebhookCounts(Collector):
    """`planeflow_webhooks_total{source, outcome}`, counted in a plain dict and read at
    scrape time: the receiver counts every batch, and a prometheus-client Counter's step
    (a lock, a value object) cost it more than the dict. Only the event loop counts, so
    the dict needs no lock; a scrape (in a thread) copies it in one step."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}

    def add(self, source: str, outcome: str, n: int = 1) -> None:
        key = (source, outcome)
        self._counts[key] = self._counts.get(key, 0) + n

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "planeflow_webhooks",
            "Webhook requests by source and outcome",
            labels=["source", "outcome"],
        )
        for (source, outcome), n in list(self._counts.items()):
            family.add_metric([source, outcome], n)
        yield family


class SharedScrape:
    """The Redis-backed part of a scrape, in a thread of its own, one at a time, waited
    for at most `wait_s`. A hung Redis holds each of its reads for the client's timeout
    and retries (about a minute for a whole scrape): scrapes meanwhile share the one in
    flight, are answered without it in time, and never take threads from anything else."""

    def __init__(self, wait_s: float = 5.0) -> None:
        self.registry = CollectorRegistry()  # the Redis-backed collectors, registered here
        self.wait_s = wait_s
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pf-metrics")
        self._running: asyncio.Future[bytes] | None = None

    async def text(self) -> bytes | None:
        """The shared metrics' exposition text; None when not read within `wait_s`."""
        if self._running is None or self._running.done():
            loop = asyncio.get_running_loop()
            self._running = loop.run_in_executor(self._thread, generate_latest, self.registry)
            # retrieved here when no scrape waits for it any more (a late failure)
            self._running.add_done_callback(_retrieve)
        try:
            return await asyncio.wait_for(asyncio.shield(self._running), self.wait_s)
        except TimeoutError:
            return None

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)


def _retrieve(future: asyncio.Future[bytes]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("metrics: the shared scrape failed: %s", future.exception())
