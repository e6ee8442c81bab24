"""Retention: finished tasks older than a cutoff are removed, leaving a tombstone.

A purge deletes a done or cancelled task's hash, timeline, outbox leftovers, its jobs
and its anti-dup index entry, and writes `pf:tombstone:<issue>` (the work item id, the
final stage, when): the start handler refuses a purged work item with that reason, so a
late delivery or a replay never starts it again.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from app.domain.models import Task, utcnow
from app.domain.stages import FINISHED_STAGES
from app.store.base import StoreBase


class RetentionMixin(StoreBase):
    def finished_before(self, cutoff: datetime) -> list[Task]:
        tasks: list[Task] = []
        for stage in FINISHED_STAGES:
            ids = self.r.smembers(self.keys.tasks_in_stage(stage.value))
            pipe = self.r.pipeline(transaction=False)
            for task_id in ids:
                pipe.hgetall(self.keys.task(task_id))
            tasks += [Task.from_hash(d) for d in pipe.execute() if d]
        return [t for t in tasks if t.updated_at < cutoff]

    def jobs_of(self, task_ids: set[str]) -> dict[str, list[str]]:
        """Task id -> its job ids (one scan over the jobs)."""
        found: dict[str, list[str]] = {t: [] for t in task_ids}
        for key in self.r.scan_iter(match=self.keys.job("*"), count=1000):
            owner = self.r.hget(key, "task_id")
            if owner in found:
                found[str(owner)].append(str(key).rsplit(":", 1)[-1])
        return found

    def purge_task(self, task: Task, job_ids: list[str]) -> None:
        keys = self.keys
        tombstone = {
            "work_item": task.work_item_id,
            "task_id": task.id,
            "stage": task.stage.value,
            "purged_at": utcnow().isoformat(),
        }
        with self.r.pipeline(transaction=True) as pipe:
            pipe.set(keys.tombstone(task.plane_issue_id), json.dumps(tombstone))
            pipe.delete(
                keys.task(task.id),
                keys.task_log(task.id),
                keys.task_by_issue(task.plane_issue_id),
                keys.outbox_comments(task.id),
                keys.outbox_notes(task.id),
                keys.outbox_statuses(task.id),
                keys.outbox_seq(task.id),
                *(keys.job(j) for j in job_ids),
            )
            pipe.srem(keys.tasks_in_stage(task.stage.value), task.id)
            pipe.zrem(keys.tasks_all, task.id)
            if job_ids:
                pipe.srem(keys.jobs_active, *job_ids)
            pipe.execute()

    def tombstone(self, plane_issue_id: str) -> dict[str, Any] | None:
        raw = self.r.get(self.keys.tombstone(plane_issue_id))
        return dict(json.loads(raw)) if raw else None
