"""Applying a decision: one Redis transaction, then the deploy slot; sends come after.

`apply_decision` is how the job runner, the handlers and the reconciler carry out a
`Decision` (`app.domain.decisions`), always under the work item's lock: in one
MULTI/EXEC it finishes the job that ended, cancels the task's other active job if the
decision says so, moves the task (fields, stage sets, the outbox's stage list, the
timeline), creates the next stage's job, and queues the decision's comments and status
in the Plane outbox (or drops what waited there). Right after, the repo's deploy slot
is freed if the decision says so, and its merge slot when the task leaves `merge`.
Nothing here talks to Plane or the queue: the caller sends the new job and wakes the
outbox flusher once the lock is released.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.exceptions import WatchError

from app.domain.decisions import Decision
from app.domain.errors import StoreError
from app.domain.models import Job, JobState, Task, utcnow
from app.domain.stages import Stage
from app.outbox_store import OutboxStore, PendingComment
from app.store import Store


@dataclass(frozen=True)
class Applied:
    task: Task  # as moved
    job: Job | None  # the new stage's job, to send once the lock is released
    decision: Decision


@dataclass(frozen=True)
class EndedJob:
    """The job whose end the decision is about (finished in the same transaction)."""

    id: str
    outcome: str
    state: JobState = JobState.FINISHED
    error: str | None = None


def apply_decision(
    store: Store,
    task_id: str,
    decision: Decision,
    *,
    ended: EndedJob | None = None,
    time_limit_s: float = 1800.0,
    seen_state: str | None = None,
) -> Applied:
    """`seen_state`: the state the work item showed in Plane when a human's move was
    handled (so the outbox does not write what Plane already shows)."""
    outbox = OutboxStore(store.r, store.keys)
    task_key = store.keys.task(task_id)
    while True:
        with store.r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(task_key)
                data = pipe.hgetall(task_key)
                if not data:
                    raise StoreError(f"task {task_id} does not exist")
                task = Task.from_hash(data)
                new_job = _new_job(store, task, decision, time_limit_s)
                comments = [outbox.new_comment(task_id, html) for html in decision.effects.comments]
                pipe.multi()
                if ended is not None:
                    store.queue_finish(pipe, ended.id, ended.outcome, ended.state, ended.error)
                other = task.active_job_id
                if decision.effects.cancel_active_job and other and other != (ended and ended.id):
                    store.queue_finish(pipe, other, "cancelled", JobState.CANCELLED, None)
                moved = _moved(task, decision, new_job, seen_state)
                store.queue_move(pipe, task, moved, decision.reason)
                if new_job is not None:
                    store.queue_new_job(pipe, new_job)
                _outbox(pipe, store, outbox, task_id, decision, comments)
                pipe.execute()
            except WatchError:
                continue
        if decision.effects.free_deploy_slot:
            store.release_deploy_slot(task.repo, task_id)
        if task.stage is Stage.MERGE and decision.stage is not Stage.MERGE:
            store.release_merge_slot(task.repo, task_id)  # the next card may merge
        return Applied(moved, new_job, decision)


def _new_job(store: Store, task: Task, decision: Decision, time_limit_s: float) -> Job | None:
    if not decision.effects.queue_job:
        return None
    return Job(
        id=store.next_job_id(), task_id=task.id, stage=decision.stage, time_limit_s=time_limit_s
    )


def _moved(task: Task, decision: Decision, new_job: Job | None, seen_state: str | None) -> Task:
    now = utcnow()
    fields = dict(decision.fields)
    if seen_state:
        fields.update(plane_state_id=seen_state, status_sync_ok=True)
    if decision.stage is Stage.REVIEW:
        fields.setdefault("review_started_at", now)
    return task.model_copy(
        update={
            **fields,
            "stage": decision.stage,
            "updated_at": now,
            "active_job_id": new_job.id if new_job is not None else None,
        }
    )


def _outbox(
    pipe: Any,
    store: Store,
    outbox: OutboxStore,
    task_id: str,
    decision: Decision,
    comments: list[PendingComment],
) -> None:
    keys = store.keys
    effects = decision.effects
    if effects.drop_plane_writes:
        pipe.delete(
            keys.outbox_comments(task_id), keys.outbox_statuses(task_id), keys.outbox_notes(task_id)
        )
        pipe.zrem(keys.outbox_due, task_id)
        return
    for comment in comments:
        outbox.queue_comment(pipe, task_id, comment)
    if effects.show_status:
        outbox.schedule(task_id, pipe=pipe)
