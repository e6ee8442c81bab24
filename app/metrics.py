"""Prometheus metrics of the web process, plus what all processes share in Redis.

Per-process counters live in a registry owned by the app. At scrape time the Redis
hash `pf:counters` (Plane calls, failures, replays per project, ...) is exposed as
`planeflow_shared_total{name=...}` and `pf:webhooks:last` as
`planeflow_last_webhook_timestamp_seconds{project=...}` (the webhook-loss meter).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

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


class WebMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.webhooks = Counter(
            "planeflow_webhooks",
            "Webhook requests by source and outcome",
            ["source", "outcome"],
            registry=self.registry,
        )
        self._children: dict[tuple[str, str], Any] = {}
        self.spool_pending = Gauge(
            "planeflow_spool_pending", "Events waiting in the local spool", registry=self.registry
        )

    def count(self, source: str, outcome: str) -> None:
        key = (source, outcome.split(":", 1)[0])
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.webhooks.labels(*key)
        child.inc()
