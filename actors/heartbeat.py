"""Keeps a worker's Redis heartbeat fresh while all its threads are busy.

Dramatiq's Redis broker refreshes a worker's heartbeat only on broker calls; a
consumer whose prefetch is full makes none, so with long jobs the worker looks dead
after `heartbeat_timeout` and its in-flight messages are handed to another worker
(Bogdanp/dramatiq#692). This middleware beats from a thread for the worker's life.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from dramatiq.middleware import Middleware

log = logging.getLogger(__name__)


class RedisHeartbeat(Middleware):  # type: ignore[misc]
    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._beat, args=(broker,), daemon=True, name="planeflow-heartbeat"
        )
        self._thread.start()

    def after_worker_shutdown(self, broker: Any, worker: Any) -> None:
        self._stop.set()

    def _beat(self, broker: Any) -> None:
        key = f"{broker.namespace}:__heartbeats__"
        while not self._stop.wait(self.interval_s):
            try:
                broker.client.zadd(key, {broker.broker_id: int(time.time() * 1000)})
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
