"""Reconcile actors: the periodic fan-out and the per-project pass."""

from __future__ import annotations

import logging

import dramatiq

from actors import runtime
from app.purge import purge
from app.queue import RECONCILE_ALL, RECONCILE_PROJECT, RECONCILE_QUEUE

log = logging.getLogger(__name__)


def reconcile_all() -> None:
    """Fan out one `reconcile_project` per due project; sweep stuck jobs and overdue
    Plane writes."""
    services = runtime.services()
    for project in services.reconciler.due_projects():
        services.dispatcher.send(RECONCILE_QUEUE, RECONCILE_PROJECT, project.name)
    services.reconciler.sweep_jobs()
    services.reconciler.sweep_worktrees()
    services.flusher.resend_overdue()
    if services.settings.retention_days > 0:
        purge(services.store, services.settings.repos_dir, services.settings.retention_days * 86400)


def reconcile_project(name: str) -> None:
    """One pass for one project (skipped, not stacked, if one is already running)."""
    services = runtime.services()
    project = services.registry.get(name)
    if project is None:
        log.warning("reconcile: project %r is no longer in the registry", name)
        return
    log.info("reconcile %s", services.reconciler.reconcile_project(project).summary())


def register(broker: dramatiq.Broker) -> None:
    # No retries: the next scheduled pass is the retry, and a pass never raises anyway.
    dramatiq.actor(
        broker=broker,
        actor_name=RECONCILE_ALL,
        queue_name=RECONCILE_QUEUE,
        max_retries=0,
        time_limit=60_000,
        max_age=120_000,
    )(reconcile_all)
    dramatiq.actor(
        broker=broker,
        actor_name=RECONCILE_PROJECT,
        queue_name=RECONCILE_QUEUE,
        max_retries=0,
        time_limit=300_000,
        max_age=300_000,
    )(reconcile_project)
