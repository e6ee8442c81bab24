"""Prometheus metrics of the web process, plus the counters shared in Redis.

Per-process counters live in a registry owned by the app. The Redis hash
`pf:counters` (Plane calls, failures, replays, ...) is written by every process and
exposed here at scrape time as `planeflow_shared_total{name=...}`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


class SharedCounters(Collector):
    """Reads `pf:counters` from Redis at every scrape (one HGETALL)."""

    def __init__(self, client: Any, key: str) -> None:
        self.client = client
        self.key = key

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "planeflow_shared", "Counters shared by all processes", labels=["name"]
        )
        try:
            for name, value in sorted(self.client.hgetall(self.key).items()):
                family.add_metric([name], float(value))
        except Exception as exc:  # a scrape must not fail because Redis is down
            log.warning("metrics: cannot read shared counters: %s", exc)
        yield family


class WebMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.webhooks = Counter(
            "planeflow_webhooks",
            "Webhook requests by source and outcome",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.spool_pending = Gauge(
            "planeflow_spool_pending", "Events waiting in the local spool", registry=self.registry
        )

    def count(self, source: str, outcome: str) -> None:
        self.webhooks.labels(source, outcome.split(":", 1)[0]).inc()
