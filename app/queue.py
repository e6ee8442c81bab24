"""Queue and actor names, and sending messages to actors by name.

`web` and `app/` enqueue without importing `actors`: a Dramatiq broker can enqueue a
message for an actor it has not declared, so only the worker needs the actor code.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

EVENTS_QUEUE = "events"
JOBS_QUEUE = "jobs"
RECONCILE_QUEUE = "reconcile"

PROCESS_EVENT = "process_event"
PROCESS_FORGE_EVENT = "process_forge_event"
RUN_JOB = "run_job"
RECONCILE_ALL = "reconcile_all"
RECONCILE_PROJECT = "reconcile_project"


def make_redis_broker(
    url: str | None = None,
    *,
    client: Any = None,
    middleware: list[Any] | None = None,
    heartbeat_timeout_ms: int = 15_000,
    maintenance_chance: int = 1000,
) -> RedisBroker:
    """A RedisBroker tuned so a dead worker's messages come back within ~30 s.

    Dramatiq's defaults (60 s heartbeat timeout, 0.1 % maintenance chance per broker
    call) take about 11 minutes on an idle system; DESIGN section 11.
    `maintenance_chance` is out of 100_000 (dramatiq's scale): 1000 = 1 %.
    """
    kwargs: dict[str, Any] = {
        "heartbeat_timeout": heartbeat_timeout_ms,
        "maintenance_chance": maintenance_chance,
    }
    if middleware is not None:
        kwargs["middleware"] = middleware
    if client is not None:
        return RedisBroker(client=client, **kwargs)  # type: ignore[no-untyped-call]
    return RedisBroker(url=url, **kwargs)  # type: ignore[no-untyped-call]


class Dispatcher:
    """Sends messages to actors by name on a broker.

    It declares no queue: only a worker that has the actor consumes its queue.
    """

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker

    def send(self, queue: str, actor: str, *args: Any, delay_ms: int | None = None) -> str:
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=queue, actor_name=actor, args=args, kwargs={}, options={}
        )
        sent = self.broker.enqueue(message, delay=delay_ms)
        return str(sent.message_id)

    def send_event(self, payload: dict[str, Any]) -> str:
        return self.send(EVENTS_QUEUE, PROCESS_EVENT, payload)

    def send_forge_event(self, payload: dict[str, Any]) -> str:
        return self.send(EVENTS_QUEUE, PROCESS_FORGE_EVENT, payload)

    def send_job(self, job_id: str, *, delay_ms: int | None = None) -> str:
        return self.send(JOBS_QUEUE, RUN_JOB, job_id, delay_ms=delay_ms)
