"""Actors for stored webhook events."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq

from actors import runtime
from app.queue import EVENTS_QUEUE, PROCESS_EVENT, PROCESS_FORGE_EVENT

log = logging.getLogger(__name__)


def process_event(payload: dict[str, Any]) -> None:
    """A Plane event: the work item's current state, routed to a handler (logged there,
    with the work item's fields)."""
    runtime.services().events.process(payload)


def process_forge_event(payload: dict[str, Any]) -> None:
    """A Gitea pull_request/status event: re-evaluate the project's waiting merges now
    (the reconciler's periodic look is only the fallback)."""
    runner = runtime.services().job_runner
    count = runner.reevaluate_merge(
        str(payload.get("project")), list(payload.get("branches") or [])
    )
    log.info(
        "forge event %s (%s on %s): %d merge(s) re-evaluated",
        payload.get("event_id"),
        payload.get("event"),
        payload.get("repo"),
        count,
    )


def register(broker: dramatiq.Broker) -> None:
    dramatiq.actor(
        broker=broker,
        actor_name=PROCESS_EVENT,
        queue_name=EVENTS_QUEUE,
        max_retries=8,
        time_limit=120_000,
    )(process_event)
    dramatiq.actor(
        broker=broker,
        actor_name=PROCESS_FORGE_EVENT,
        queue_name=EVENTS_QUEUE,
        max_retries=8,
        time_limit=60_000,
    )(process_forge_event)
