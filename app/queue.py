"""Queue and actor names, and sending messages to actors by name.

`web` and `app/` enqueue without importing `actors`: a Dramatiq broker can enqueue a
message for an actor it has not declared, so only the worker needs the actor code.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
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

    def send_job(self, job_id: str, *, delay_ms: int | None = None) -> str:
        return self.send(JOBS_QUEUE, RUN_JOB, job_id, delay_ms=delay_ms)


DRAMATIQ_NAMESPACE = "dramatiq"
# Stands for the event's stream id in a message written before that id exists.
EVENT_ID_PLACEHOLDER = "@@planeflow-event-id@@"


@dataclass(frozen=True)
class PreparedMessage:
    """A Dramatiq message as the ingest script writes it, around a not-yet-known event id.

    The encoded message is `prefix + <stream id> + suffix`; `list_key` and `msgs_key`
    are the queue's Redis list and hash, as Dramatiq's RedisBroker lays them out
    (`<namespace>:<queue>` holds message ids, `<namespace>:<queue>.msgs` id -> data).
    """

    message_id: str
    prefix: str
    suffix: str
    list_key: str
    msgs_key: str


def queue_keys(queue: str, namespace: str = DRAMATIQ_NAMESPACE) -> tuple[str, str]:
    """The Redis list and hash of a Dramatiq queue (dramatiq 2.x RedisBroker layout)."""
    return f"{namespace}:{queue}", f"{namespace}:{queue}.msgs"


def prepare_message(
    queue: str, actor: str, payload: dict[str, Any], namespace: str = DRAMATIQ_NAMESPACE
) -> PreparedMessage:
    """Encode a message to `actor` whose payload's `event_id` is filled in by Redis.

    `event_id` is the payload's first key, so the placeholder's first occurrence in the
    encoded message is ours whatever text the other fields carry.
    """
    message_id = str(uuid.uuid4())
    args = (
        {"event_id": EVENT_ID_PLACEHOLDER, **{k: v for k, v in payload.items() if k != "event_id"}},
    )
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue,
        actor_name=actor,
        args=args,
        kwargs={},
        options={"redis_message_id": message_id},
        message_id=message_id,
    )
    prefix, _, suffix = message.encode().decode("utf-8").partition(EVENT_ID_PLACEHOLDER)
    list_key, msgs_key = queue_keys(queue, namespace)
    return PreparedMessage(message_id, prefix, suffix, list_key, msgs_key)
