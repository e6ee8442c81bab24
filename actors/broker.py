"""The one place the Dramatiq broker and its middleware are set up.

Middleware, deliberately: AgeLimit (drop messages older than a day rather than act on
stale events), TimeLimit (per-actor limits on the actor line), ShutdownNotifications
(long jobs learn the worker is stopping), Callbacks/Pipelines (Dramatiq defaults),
Retries (exponential backoff, 1 s .. 5 min), CurrentMessage, our RedisHeartbeat (see
actors.heartbeat), DeadLetterNotes (why a message died, for the dashboard) and, in
real worker processes, Prometheus.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from actors.dead_letters import DeadLetterNotes
from actors.heartbeat import RedisHeartbeat
from app.config import Settings
from app.keys import Keys
from app.queue import make_redis_broker

HEARTBEAT_TIMEOUT_MS = 15_000
# Out of 1_000_000 broker calls. Idle consumers call about once a second per queue, so
# a dead worker's messages are requeued ~15 s + a few s after its last heartbeat.
MAINTENANCE_CHANCE = 200_000


def middleware(*, prometheus: bool = False, keys: Keys | None = None) -> list[Any]:
    chosen: list[Any] = [
        AgeLimit(max_age=24 * 3600 * 1000),
        TimeLimit(time_limit=10 * 60 * 1000),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(max_retries=10, min_backoff=1000, max_backoff=5 * 60 * 1000),
        CurrentMessage(),
        RedisHeartbeat(interval_s=HEARTBEAT_TIMEOUT_MS / 3000),
        DeadLetterNotes(keys or Keys()),
    ]
    if prometheus:
        from dramatiq.middleware.prometheus import Prometheus

        chosen.append(Prometheus())
    return chosen


def setup_broker(
    settings: Settings, *, client: Any = None, prometheus: bool = False
) -> RedisBroker:
    """Build the broker, make it Dramatiq's global one, and return it."""
    broker = make_redis_broker(
        settings.redis_url,
        client=client,
        middleware=middleware(prometheus=prometheus, keys=settings.keys),
        heartbeat_timeout_ms=HEARTBEAT_TIMEOUT_MS,
        maintenance_chance=MAINTENANCE_CHANCE,
    )
    dramatiq.set_broker(broker)
    return broker
