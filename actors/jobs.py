"""The stage-job actor."""

from __future__ import annotations

import logging

import dramatiq

from actors import runtime
from app.queue import JOBS_QUEUE, RUN_JOB

log = logging.getLogger(__name__)


def run_job(job_id: str) -> None:
    """Run one stage job; a job that already has an outcome is not run again."""
    log.info("job %s: %s", job_id, runtime.services().job_runner.run(job_id))


def register(broker: dramatiq.Broker) -> None:
    # Agents enforce their own per-role limits; this only stops a runaway job runner.
    # Retries: a crash of the runner itself (the stage's failures are handled inside).
    dramatiq.actor(
        broker=broker,
        actor_name=RUN_JOB,
        queue_name=JOBS_QUEUE,
        max_retries=3,
        time_limit=24 * 3600 * 1000,
        max_age=7 * 24 * 3600 * 1000,
    )(run_job)
