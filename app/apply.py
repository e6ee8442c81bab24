"""Applying a decision: one Redis transaction, then the deploy slot; sends come after.

`apply_decision` is how the job runner, the handlers and the reconciler carry out a
`Decision` (`app.domain.decisions`), always under the work item's lock: in one
MULTI/EXEC it finishes the job that ended, cancels the task's other active job if the
decision says so, moves the task (fields, stage sets, the outbox's stage list, the
timeline), creates the next stage's job, and queues the decision's comments and status
in the Plane outbox (or drops what waited there). Right after, the repo's deploy slot
is freed if the decision says so. Nothing here talks to Plane or the queue: the caller
sends the new job and wakes the outbox flusher once the lock is released.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.exceptions import WatchError

from app.domain.decisions import Decision
from app.domain.errors import StoreError
from app.domain.models import Job, JobState, Task, utcnow
from app.domain.results import TimelineKind
from app.domain.stages import Stage
from app.outbox_store import PendingComment
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
) -> Applied:
    keys = store.keys
    task_key = keys.task(task_id)
    while True:
        with store.r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(task_key)
                data = pipe.hgetall(task_key)
                if not data:
                    raise StoreError(f"task {task_id} does not exist")
                task = Task.from_hash(data)
                new_job = _new_job(store, task, decision, time_limit_s)
                comments = [_comment(store, task_id, html) for html in decision.effects.comments]
                pipe.multi()
                now = utcnow()
                if ended is not None:
                    _finish(pipe, store, ended, now)
                other = task.active_job_id
                if decision.effects.cancel_active_job and other and other != (ended and ended.id):
                    _finish(pipe, store, EndedJob(other, "cancelled", JobState.CANCELLED), now)
                moved = _move(pipe, store, task, decision, new_job, now)
                if new_job is not None:
                    pipe.hset(keys.job(new_job.id), mapping=new_job.to_hash())
                    pipe.sadd(keys.jobs_active, new_job.id)
                _outbox(pipe, store, task_id, decision, comments)
                if new_job is not None:
                    store._xadd_timeline(
                        pipe,
                        task_id,
                        TimelineKind.JOB,
                        f"job {new_job.id} queued for {new_job.stage.value}",
                        {"job_id": new_job.id},
                    )
                pipe.execute()
            except WatchError:
                continue
        if decision.effects.free_deploy_slot:
            store.release_deploy_slot(task.repo, task_id)
        return Applied(moved, new_job, decision)


def _new_job(store: Store, task: Task, decision: Decision, time_limit_s: float) -> Job | None:
    if not decision.effects.queue_job:
        return None
    return Job(
        id=str(store.r.incr(store.keys.job_seq)),
        task_id=task.id,
        stage=decision.stage,
        time_limit_s=time_limit_s,
    )


def _comment(store: Store, task_id: str, html: str) -> PendingComment:
    seq = int(store.r.incr(store.keys.outbox_seq(task_id)))
    return PendingComment(f"planeflow-{task_id}-{seq}", html, utcnow().isoformat())


def _finish(pipe: Any, store: Store, ended: EndedJob, now: Any) -> None:
    pipe.hset(
        store.keys.job(ended.id),
        mapping={
            "state": ended.state.value,
            "outcome": ended.outcome,
            "error": ended.error or "",
            "finished_at": now.isoformat(),
        },
    )
    pipe.srem(store.keys.jobs_active, ended.id)


def _move(
    pipe: Any, store: Store, task: Task, decision: Decision, new_job: Job | None, now: Any
) -> Task:
    keys = store.keys
    fields = dict(decision.fields)
    if decision.stage is Stage.REVIEW:
        fields.setdefault("review_started_at", now)
    moved = task.model_copy(
        update={
            **fields,
            "stage": decision.stage,
            "updated_at": now,
            "active_job_id": new_job.id if new_job is not None else None,
        }
    )
    pipe.hset(keys.task(task.id), mapping=moved.to_hash())
    pipe.srem(keys.tasks_in_stage(task.stage.value), task.id)
    pipe.sadd(keys.tasks_in_stage(decision.stage.value), task.id)
    pipe.rpush(keys.outbox_statuses(task.id), decision.stage.value)
    pipe.ltrim(keys.outbox_statuses(task.id), -50, -1)
    store._xadd_timeline(
        pipe,
        task.id,
        TimelineKind.TRANSITION,
        f"{task.stage.value} -> {decision.stage.value}: {decision.reason}",
        {"from": task.stage.value, "to": decision.stage.value},
    )
    return moved


def _outbox(
    pipe: Any, store: Store, task_id: str, decision: Decision, comments: list[PendingComment]
) -> None:
    keys = store.keys
    effects = decision.effects
    if effects.drop_plane_writes:
        pipe.delete(keys.outbox_comments(task_id), keys.outbox_statuses(task_id))
        pipe.zrem(keys.outbox_due, task_id)
        return
    for comment in comments:
        pipe.rpush(keys.outbox_comments(task_id), comment.to_json())
    if comments or effects.show_status:
        pipe.zadd(keys.outbox_due, {task_id: utcnow().timestamp()})
