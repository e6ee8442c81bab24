"""The store's base: the Redis connection, locks and the task timeline.

Key names come from `app.keys`. Locks are redis-py's own `Lock` (owner token + TTL;
release is a compare-and-delete, so we never free someone else's lock).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import LockError, LockNotOwnedError
from redis.retry import Retry

from app.domain.errors import StoreError
from app.domain.models import utcnow
from app.domain.results import TimelineKind
from app.keys import Keys

log = logging.getLogger(__name__)

Redis = redis.Redis
TIMELINE_MAXLEN = 2000


def connect(url: str) -> Redis:
    """A client that speaks str (decode_responses); the broker keeps its own client.

    Retries are short on purpose: when Redis is down the receiver must fall back to its
    spool within a fraction of a second, not after redis-py's default backoff.
    """
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        health_check_interval=30,
        socket_connect_timeout=2,
        socket_timeout=10,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
    )


class StoreBase:
    """The connection, the key layout, locks and the timeline; the concepts build on it."""

    def __init__(
        self,
        client: Redis,
        keys: Keys | None = None,
        *,
        lock_ttl_s: float = 30.0,
        lock_wait_s: float = 10.0,
    ) -> None:
        # Any: redis-py types every reply as bytes|str whatever decode_responses says.
        self.r: Any = client
        self.keys = keys or Keys()
        self.lock_ttl_s = lock_ttl_s
        self.lock_wait_s = lock_wait_s

    # -- locks ------------------------------------------------------------------
    @contextmanager
    def lock(self, name: str, *, ttl_s: float | None = None) -> Iterator[None]:
        """Hold the Redis lock `name`; StoreError if it is not ours within lock_wait_s."""
        lk = self.r.lock(
            name,
            timeout=ttl_s or self.lock_ttl_s,
            blocking_timeout=self.lock_wait_s,
            thread_local=False,
        )
        if not lk.acquire():
            raise StoreError(
                f"lock {name!r} still held by another owner after {self.lock_wait_s:g}s"
            )
        try:
            yield
        finally:
            try:
                lk.release()
            except LockNotOwnedError:
                # Our TTL ran out and someone else may hold it now: leave theirs alone.
                log.warning("lock %s expired before release (critical section too long)", name)
                self.r.hincrby(self.keys.counters, "lock_expired", 1)
            except LockError as exc:
                log.warning("lock %s release failed: %s", name, exc)

    @contextmanager
    def issue_lock(self, plane_issue_id: str) -> Iterator[None]:
        """Serialise the handlers of one work item."""
        with self.lock(self.keys.issue_lock(plane_issue_id)):
            yield

    # -- timeline ---------------------------------------------------------------
    def _xadd_timeline(
        self,
        pipe: Any,
        task_id: str,
        kind: TimelineKind,
        message: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        fields = {
            "ts": utcnow().isoformat(),
            "kind": kind.value,
            "message": message,
            **(extra or {}),
        }
        pipe.xadd(self.keys.task_log(task_id), fields, maxlen=TIMELINE_MAXLEN, approximate=True)

    def record(self, task_id: str, kind: TimelineKind, message: str, **extra: str) -> None:
        """Append one decision to the task's timeline stream."""
        self._xadd_timeline(self.r, task_id, kind, message, extra)

    def timeline(self, task_id: str) -> list[dict[str, str]]:
        return [
            dict(fields, id=entry_id)
            for entry_id, fields in self.r.xrange(self.keys.task_log(task_id))
        ]


def numeric_order(value: str) -> tuple[int, str]:
    """Sort key for ids that are numbers as strings ("10" after "9")."""
    return (int(value), value) if value.isdigit() else (0, value)
