"""The Plane outbox actors: send one task's pending status and comments to Plane; post
a command's reply on a work item that has no task."""

from __future__ import annotations

import logging

import dramatiq

from actors import runtime
from app.commands import post_reply as post_reply_now
from app.queue import FLUSH_OUTBOX, PLANE_QUEUE, POST_REPLY

log = logging.getLogger(__name__)


def flush_outbox(task_id: str) -> None:
    """Write what the task should show and say; a failure reschedules itself with backoff
    (logged by the flusher, with the task's fields)."""
    runtime.services().flusher.flush(task_id)


def post_reply(project_id: str, issue_id: str, reply: str, external_id: str) -> None:
    """A reply comment, once (its external id); a busy budget or an error Plane may get
    over is retried with backoff — for hours, then the message is dead-lettered, where
    the dashboard shows it and can requeue it."""
    post_reply_now(runtime.services().plane, project_id, issue_id, reply, external_id)


def register(broker: dramatiq.Broker) -> None:
    # Retries come from the outbox itself (backoff in `pf:outbox:due`); a Dramatiq retry
    # would only repeat a crash. The scheduler re-sends overdue flushes.
    dramatiq.actor(
        broker=broker,
        actor_name=FLUSH_OUTBOX,
        queue_name=PLANE_QUEUE,
        max_retries=0,
        time_limit=300_000,
    )(flush_outbox)
    dramatiq.actor(
        broker=broker,
        actor_name=POST_REPLY,
        queue_name=PLANE_QUEUE,
        max_retries=40,
        min_backoff=2_000,
        max_backoff=600_000,
        time_limit=60_000,
    )(post_reply)
