"""The shared Plane request budget: one sliding window in Redis for every process.

Plane allows a fixed number of requests per minute per API key (60 by default) and
answers 429 past it. Dramatiq's `WindowRateLimiter` on its Redis backend keeps a
60-second sliding window shared by all workers; `acquire` waits (with jitter) for a
slot instead of failing, up to `max_wait_s`.

Priorities share the one window: a lower priority may only take a request while the
window is below its share of the limit, so under congestion reads for human triggers
go first, then status writes, then comments (`RateBudget.at`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from enum import Enum

import redis
from dramatiq.rate_limits import WindowRateLimiter
from dramatiq.rate_limits.backends import RedisBackend

from app.domain.errors import TemporaryError


class Priority(Enum):
    """Who is asking, and the share of the window it may fill."""

    TRIGGER = 1.0  # reading a work item a human just moved
    STATUS = 0.85  # mirroring a stage to Plane
    COMMENT = 0.7  # milestone comments

    @property
    def share(self) -> float:
        return float(self.value)


class RateBudget:
    def __init__(
        self,
        client: redis.Redis,
        key: str,
        *,
        per_minute: int,
        max_wait_s: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.per_minute = per_minute
        self.max_wait_s = max_wait_s
        self._client = client
        self._key = key
        self._sleep = sleep
        self.limit = per_minute
        self._limiter = WindowRateLimiter(  # type: ignore[no-untyped-call]
            RedisBackend(client=client), key, limit=per_minute, window=60
        )

    def at(self, priority: Priority) -> RateBudget:
        """The same window, for a caller of `priority` (it stops at its share)."""
        budget = RateBudget(
            self._client,
            self._key,
            per_minute=self.per_minute,
            max_wait_s=self.max_wait_s,
            sleep=self._sleep,
        )
        budget.limit = max(1, int(self.per_minute * priority.share))
        budget._limiter = WindowRateLimiter(  # type: ignore[no-untyped-call]
            RedisBackend(client=self._client), self._key, limit=budget.limit, window=60
        )
        return budget

    def try_acquire(self) -> bool:
        with self._limiter.acquire(raise_on_failure=False) as acquired:
            return bool(acquired)

    def acquire(self) -> float:
        """Block until a request may be sent; return the seconds waited."""
        start = time.monotonic()
        while not self.try_acquire():
            waited = time.monotonic() - start
            if waited >= self.max_wait_s:
                raise TemporaryError(
                    f"Plane request budget ({self.per_minute}/min) exhausted for {waited:.0f}s"
                )
            self._sleep(0.2 + random.random() * 0.3)
        return time.monotonic() - start
