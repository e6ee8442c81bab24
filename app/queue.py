"""Queue and actor names, and sending messages to actors by name.

`web` and `app/` enqueue without importing `actors`: a Dramatiq broker can enqueue a
message for an actor it has not declared, so only the worker needs the actor code.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import dramatiq
import orjson
from dramatiq.brokers.redis import RedisBroker

EVENTS_QUEUE = "events"
JOBS_QUEUE = "jobs"
RECONCILE_QUEUE = "reconcile"
PLANE_QUEUE = "plane"

PROCESS_EVENT = "process_event"
PROCESS_FORGE_EVENT = "process_forge_event"
RUN_JOB = "run_job"
RECONCILE_ALL = "reconcile_all"
RECONCILE_PROJECT = "reconcile_project"
FLUSH_OUTBOX = "flush_outbox"
POST_REPLY = "post_reply"  # a command's reply on a work item that has no task


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

    def send_flush(self, task_id: str, *, delay_ms: int | None = None) -> str:
        return self.send(PLANE_QUEUE, FLUSH_OUTBOX, task_id, delay_ms=delay_ms)


DRAMATIQ_NAMESPACE = "dramatiq"


def queue_keys(queue: str, namespace: str = DRAMATIQ_NAMESPACE) -> tuple[str, str]:
    """The Redis list and hash of a Dramatiq queue (dramatiq 2.x RedisBroker layout):
    `<namespace>:<queue>` holds message ids, `<namespace>:<queue>.msgs` id -> data."""
    return f"{namespace}:{queue}", f"{namespace}:{queue}.msgs"


# A Dramatiq message in pieces, joined by the ingest script once the message id exists:
#   head + id + args + AFTER_ARGS + id + BEFORE_ID + id + BEFORE_TIMESTAMP + ms + "}"
# where the id is the event's `pf:events` id (unique, like Dramatiq's own; also the
# `event_id` argument) and ms the batch's time. The text is what dramatiq 2.2's
# JSONEncoder makes of `Message.asdict()` (orjson keeps non-ASCII text as UTF-8 where
# Dramatiq writes `\\u` escapes: the same JSON); a real Worker consumes it in
# tests/integration/test_ingest_dramatiq.py.
MESSAGE_AFTER_ARGS = '}],"kwargs":{},"options":{"redis_message_id":"'
MESSAGE_BEFORE_ID = '"},"message_id":"'
MESSAGE_BEFORE_TIMESTAMP = '","message_timestamp":'


@functools.lru_cache(maxsize=64)
def message_head(queue: str, actor: str) -> str:
    """The message's text before its id: queue, actor and the opening of `event_id`."""
    return (
        f'{{"queue_name":{json.dumps(queue)},"actor_name":{json.dumps(actor)},'
        '"args":[{"event_id":"'
    )


def message_args(payload: dict[str, Any]) -> str:
    """The text after the `event_id` argument's value: the payload's other fields."""
    if "event_id" in payload:
        payload = {k: v for k, v in payload.items() if k != "event_id"}
    rest = orjson.dumps(payload).decode()[1:-1]
    return f'",{rest}' if rest else '"'


def join_message(head: str, args: str, message_id: str, timestamp_ms: int) -> str:
    """The whole message, as the ingest script joins it."""
    return (
        f"{head}{message_id}{args}{MESSAGE_AFTER_ARGS}{message_id}{MESSAGE_BEFORE_ID}"
        f"{message_id}{MESSAGE_BEFORE_TIMESTAMP}{timestamp_ms}}}"
    )
