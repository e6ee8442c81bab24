"""Deleted work items: Plane sends no webhook on delete, so the reconciler looks.

A live task whose work item the reconciler has not seen for `item_check_after_s` gets
one GET of its work item, a few per pass (`item_checks_per_pass`), so the check stays
inside the reconciler's share of the budget. A 404 is only a suspicion: the task is
cancelled for deletion when a second GET at least `deleted_confirm_s` (60 s) later also
answers 404 and the same pass's listing of the project succeeded (a restarted or
misconfigured Plane must not cancel everything). Cancelled as from the tracker: its job
cancelled (the runner kills the agent), slots freed, the timeline says why, and nothing
more is sent to Plane for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from app.apply import apply_decision
from app.config import Settings
from app.domain.decisions import ItemDeleted, Policy, decide, task_view
from app.domain.errors import PlaneError, TemporaryError
from app.domain.models import Task
from app.domain.results import TimelineKind
from app.domain.stages import FINISHED_STAGES
from app.plane.client import PlaneClient
from app.projects import Project
from app.store import Store

log = logging.getLogger(__name__)


class MissingItems:
    def __init__(self, settings: Settings, store: Store, now: Callable[[], datetime]) -> None:
        self.settings = settings
        self.store = store
        self.now = now

    def check(
        self, client: PlaneClient, project: Project, tasks: dict[str, Task], seen: set[str]
    ) -> tuple[int, int, int]:
        """Look for deleted work items among the project's live tasks.

        `seen` are the work items the pass's listing returned (so the project and the
        key answer). Returns (items checked, tasks cancelled, deletions still to confirm).
        """
        now = self.now()
        checked = cancelled = suspected = 0
        for issue_id, task in tasks.items():
            if task.stage in FINISHED_STAGES:
                continue
            if issue_id in seen:
                self._seen(task, now)
                continue
            if not self._due(task, now) or checked >= self.settings.item_checks_per_pass:
                continue
            checked += 1
            try:
                client.get_work_item(project.plane_project_id, issue_id)
            except PlaneError as exc:
                if exc.status == 404:
                    gone = self._not_found(task, now)
                    cancelled += gone
                    suspected += 1 - gone
                else:
                    log.info("task %s: work item check inconclusive: %s", task.id, exc)
                continue
            except TemporaryError as exc:
                log.info("task %s: work item check postponed: %s", task.id, exc)
                continue
            self._seen(task, now)
        return checked, cancelled, suspected

    def _due(self, task: Task, now: datetime) -> bool:
        if task.missing_since is not None:
            return True
        last = task.seen_at or task.created_at
        return (now - last).total_seconds() >= self.settings.item_check_after_s

    def _seen(self, task: Task, now: datetime) -> None:
        if task.missing_since is not None:
            self.store.update_task(task.id, touch=False, seen_at=now, missing_since=None)
            self.store.record(task.id, TimelineKind.PLANE, "work item found again in Plane")
        elif task.seen_at is None or (now - task.seen_at) > timedelta(seconds=60):
            self.store.update_task(task.id, touch=False, seen_at=now)

    def _not_found(self, task: Task, now: datetime) -> int:
        confirm = self.settings.deleted_confirm_s
        if task.missing_since is None:
            self.store.update_task(task.id, touch=False, missing_since=now)
            self.store.record(
                task.id,
                TimelineKind.PLANE,
                f"work item not found in Plane (404); cancelled if still missing in {confirm:g}s",
            )
            return 0
        waited = (now - task.missing_since).total_seconds()
        if waited < confirm:
            return 0
        with self.store.issue_lock(task.plane_issue_id):
            fresh = self.store.get_task(task.id)
            if fresh is None or fresh.stage in FINISHED_STAGES or fresh.missing_since is None:
                return 0
            detail = f"404 at {fresh.missing_since:%H:%M:%S} and {now:%H:%M:%S} UTC"
            decision = decide(task_view(fresh), ItemDeleted(detail), Policy(max_rework=0))
            apply_decision(self.store, task.id, decision)
        log.warning("task %s cancelled: its work item was deleted in Plane (%s)", task.id, detail)
        self.store.incr_counter("tasks_cancelled_deleted")
        return 1
