"""Redis repository: tasks, jobs, timelines, locks, the anti-dup index and shared state.

`Store` is one object made of one module per concept: `base` (connection, locks,
timeline), `tasks`, `jobs` (with the deploy slot), `shared` (stored events, our Plane
user, the states cache, event folding, counters) and `operator` (the audit trail,
work items by name, Plane members). The Plane outbox's and the
reconciler's own state live beside it (`app.outbox_store`, `app.reconcile_state`).
"""

from __future__ import annotations

from app.domain.models import Task
from app.domain.stages import Stage
from app.store.base import TIMELINE_MAXLEN, Redis, StoreBase, connect
from app.store.jobs import JobsMixin
from app.store.operator import OperatorMixin
from app.store.retention import RetentionMixin
from app.store.shared import SharedMixin
from app.store.tasks import TasksMixin

__all__ = ["TIMELINE_MAXLEN", "Redis", "Store", "connect", "create_task_atomic"]


class Store(OperatorMixin, TasksMixin, JobsMixin, SharedMixin, RetentionMixin, StoreBase):
    """All of planeflow's own Redis state, behind small explicit operations."""


def create_task_atomic(
    plane_issue_id: str,
    work_item_id: str,
    repo: str,
    branch: str,
    stage: Stage | str,
    title: str,
    *,
    client: Redis | None = None,
    project: str = "",
) -> tuple[Task, bool]:
    """Module-level entry point: connection from `ORCH_REDIS_URL` unless one is passed."""
    if client is None:
        from app.config import load_settings

        settings = load_settings()
        store = Store(
            connect(settings.redis_url),
            settings.keys,
            lock_ttl_s=settings.lock_ttl_s,
            lock_wait_s=settings.lock_wait_s,
        )
    else:
        store = Store(client)
    return store.create_task_atomic(
        plane_issue_id, work_item_id, repo, branch, stage, title, project=project
    )
