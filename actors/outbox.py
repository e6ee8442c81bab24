"""The Plane outbox actor: send one task's pending status and comments to Plane."""

from __future__ import annotations

import logging

import dramatiq

from actors import runtime
from app.queue import FLUSH_OUTBOX, PLANE_QUEUE

log = logging.getLogger(__name__)


def flush_outbox(task_id: str) -> None:
    """Write what the task should show and say; a failure reschedules itself with backoff."""
    report = runtime.services().flusher.flush(task_id)
    log.info(
        "outbox %s: %s (status written: %s, comments posted: %d)%s",
        task_id,
        report.result.value,
        report.status_written,
        report.comments_posted,
        f": {report.error}" if report.error else "",
    )


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
