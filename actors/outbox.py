"""The Plane outbox actor: send one task's pending status and comments to Plane."""

from __future__ import annotations

import logging

import dramatiq

from actors import runtime
from app.queue import FLUSH_OUTBOX, PLANE_QUEUE

log = logging.getLogger(__name__)


def flush_outbox(task_id: str) -> None:
    """Write what the task should show and say; a failure reschedules itself with backoff
    (logged by the flusher, with the task's fields)."""
    runtime.services().flusher.flush(task_id)


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
