"""Tasks: the anti-dup creation, reads, field updates and stage moves.

Every multi-key change is one MULTI/EXEC so a reader never sees a task in two stage
sets.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import WatchError

from app.domain.errors import StoreError
from app.domain.models import Task, utcnow
from app.domain.results import TimelineKind
from app.domain.stages import Stage
from app.store.base import StoreBase, numeric_order


class TasksMixin(StoreBase):
    # -- tasks ------------------------------------------------------------------
    def create_task_atomic(
        self,
        plane_issue_id: str,
        work_item_id: str,
        repo: str,
        branch: str,
        stage: Stage | str,
        title: str,
        *,
        project: str = "",
    ) -> tuple[Task, bool]:
        """Return the work item's task, creating it if absent; `created` is True once.

        Two guards: a per-issue creation lock (redis-py Lock, owner token + TTL) and,
        inside it, a WATCHed set-if-absent on the index, so even a lock that expired
        mid-way cannot let a second creator through.
        """
        index = self.keys.task_by_issue(plane_issue_id)
        with self.lock(self.keys.create_lock(plane_issue_id)):
            while True:
                with self.r.pipeline(transaction=True) as pipe:
                    try:
                        pipe.watch(index)
                        existing = pipe.get(index)
                        if existing is not None:
                            pipe.reset()
                            task = self.get_task(existing)
                            if task is None:
                                raise StoreError(f"index {index} points at missing task {existing}")
                            return task, False
                        task_id = str(self.r.incr(self.keys.task_seq))
                        task = Task(
                            id=task_id,
                            plane_issue_id=plane_issue_id,
                            work_item_id=work_item_id,
                            project=project,
                            repo=repo,
                            branch=branch,
                            stage=Stage(stage),
                            title=title,
                        )
                        pipe.multi()
                        pipe.set(index, task_id, nx=True)
                        pipe.hset(self.keys.task(task_id), mapping=task.to_hash())
                        pipe.sadd(self.keys.tasks_in_stage(task.stage.value), task_id)
                        pipe.zadd(self.keys.tasks_all, {task_id: task.created_at.timestamp()})
                        self._xadd_timeline(
                            pipe,
                            task_id,
                            TimelineKind.CREATED,
                            f"task created in stage {task.stage.value}",
                        )
                        result = pipe.execute()
                    except WatchError:
                        continue
                if result[0]:
                    return task, True

    def get_task(self, task_id: str) -> Task | None:
        data = self.r.hgetall(self.keys.task(task_id))
        return Task.from_hash(data) if data else None

    def get_task_by_issue(self, plane_issue_id: str) -> Task | None:
        task_id = self.r.get(self.keys.task_by_issue(plane_issue_id))
        return self.get_task(task_id) if task_id else None

    def list_tasks(self, stage: Stage | None = None) -> list[Task]:
        if stage is None:
            ids = self.r.zrange(self.keys.tasks_all, 0, -1)
        else:
            ids = sorted(self.r.smembers(self.keys.tasks_in_stage(stage.value)), key=numeric_order)
        pipe = self.r.pipeline(transaction=False)
        for task_id in ids:
            pipe.hgetall(self.keys.task(task_id))
        return [Task.from_hash(d) for d in pipe.execute() if d]

    def update_task(self, task_id: str, *, touch: bool = True, **fields: Any) -> Task:
        """Set plain fields of a task (not its stage: use `move_task`).

        Only these fields are written, so a concurrent `move_task` is never undone.
        `touch=False` leaves `updated_at` alone (bookkeeping that is no change of the
        task: the reconciler compares it with the work item's own update time).
        """
        if "stage" in fields:
            raise StoreError("use move_task to change a task's stage")
        task = self._require_task(task_id)
        written = [*fields, "updated_at"] if touch else list(fields)
        updated = task.model_copy(update={**fields, "updated_at": utcnow()} if touch else fields)
        flat = updated.to_hash()
        self.r.hset(self.keys.task(task_id), mapping={k: flat[k] for k in written})
        return updated

    def move_task(self, task_id: str, stage: Stage, reason: str, **fields: Any) -> Task:
        """Move a task to `stage` (the stage machine decided it), logging the reason."""
        if stage is Stage.REVIEW:
            fields.setdefault("review_started_at", utcnow())
        key = self.keys.task(task_id)
        while True:
            with self.r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)
                    data = pipe.hgetall(key)
                    if not data:
                        raise StoreError(f"task {task_id} does not exist")
                    task = Task.from_hash(data)
                    updated = task.model_copy(
                        update={**fields, "stage": stage, "updated_at": utcnow()}
                    )
                    pipe.multi()
                    self.queue_move(pipe, task, updated, reason)
                    pipe.execute()
                    return updated
                except WatchError:
                    continue

    def queue_move(self, pipe: Any, task: Task, moved: Task, reason: str) -> None:
        """The writes of a move, into `pipe` (a MULTI the caller executes): the task's
        hash, its stage sets, the outbox's stage list and the timeline entry."""
        pipe.hset(self.keys.task(task.id), mapping=moved.to_hash())
        pipe.srem(self.keys.tasks_in_stage(task.stage.value), task.id)
        pipe.sadd(self.keys.tasks_in_stage(moved.stage.value), task.id)
        # The Plane outbox shows every stage in order when the budget allows.
        pipe.rpush(self.keys.outbox_statuses(task.id), moved.stage.value)
        pipe.ltrim(self.keys.outbox_statuses(task.id), -50, -1)
        self._xadd_timeline(
            pipe,
            task.id,
            TimelineKind.TRANSITION,
            f"{task.stage.value} -> {moved.stage.value}: {reason}",
            {"from": task.stage.value, "to": moved.stage.value},
        )

    def _require_task(self, task_id: str) -> Task:
        task = self.get_task(task_id)
        if task is None:
            raise StoreError(f"task {task_id} does not exist")
        return task

    # -- usage, events, our Plane user -------------------------------------------------
    def add_usage(self, task_id: str, *, agent_seconds: float, tokens: int) -> None:
        """One agent run against the task's lifetime budget (atomic increments)."""
        key = self.keys.task(task_id)
        with self.r.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, "attempts_used", 1)
            pipe.hincrbyfloat(key, "agent_seconds", round(agent_seconds, 3))
            if tokens:
                pipe.hincrby(key, "tokens_used", tokens)
            pipe.execute()
