"""`planeflow scheduler`: the leader-locked clock that offers reconcile passes.

Several schedulers may run (a hot standby); a redis-py Lock with a TTL elects one
leader, which extends it every tick. The leader enqueues `reconcile_all` every
`ORCH_SCHEDULER_TICK_S`; `reconcile_all` runs only the projects whose interval
(`ORCH_RECONCILE_INTERVAL_S`, shortened while a project's webhooks look lost) is due.
If the leader dies, its lock expires and a standby takes over within a few ticks.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from typing import Any

from redis.exceptions import LockError

from app.config import Settings
from app.queue import RECONCILE_ALL, RECONCILE_QUEUE, Dispatcher

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        client: Any,
        dispatcher: Dispatcher,
        *,
        tick_s: float | None = None,
        name: str | None = None,
    ) -> None:
        self.tick_s = tick_s or min(settings.scheduler_tick_s, float(settings.reconcile_interval_s))
        self.dispatcher = dispatcher
        self.name = name or uuid.uuid4().hex[:8]
        self.lock = client.lock(
            settings.keys.scheduler_lock, timeout=self.tick_s * 3, thread_local=False
        )
        self.leader = False
        self.ticks_enqueued = 0

    def tick(self) -> bool:
        """Hold or take the leadership; the leader enqueues one reconcile_all."""
        try:
            if self.leader:
                self.lock.reacquire()
            else:
                self.leader = bool(self.lock.acquire(blocking=False))
                if self.leader:
                    log.info("scheduler %s: leader now", self.name)
        except LockError:
            log.warning("scheduler %s: lost the leadership", self.name)
            self.leader = False
        except Exception as exc:
            log.warning("scheduler %s: Redis unavailable: %s", self.name, exc)
            self.leader = False
        if not self.leader:
            return False
        try:
            self.dispatcher.send(RECONCILE_QUEUE, RECONCILE_ALL)
            self.ticks_enqueued += 1
        except Exception as exc:
            log.warning("scheduler %s: cannot enqueue reconcile_all: %s", self.name, exc)
        return True

    def run(self, stop: threading.Event) -> None:
        log.info("scheduler %s: ticking every %.1fs", self.name, self.tick_s)
        while not stop.is_set():
            self.tick()
            stop.wait(self.tick_s)
        if self.leader:
            with contextlib.suppress(LockError):
                self.lock.release()
        log.info("scheduler %s: stopped", self.name)
