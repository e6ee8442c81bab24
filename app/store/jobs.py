"""Jobs: one active job per task, their records, and the repo's deploy slot."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from redis.exceptions import LockError, WatchError

from app.domain.errors import StoreError
from app.domain.models import Job, JobState, Task, utcnow
from app.domain.results import TimelineKind
from app.domain.stages import Stage
from app.store.base import StoreBase, numeric_order


class JobsMixin(StoreBase):
    # -- jobs -------------------------------------------------------------------
    def create_job(
        self, task_id: str, stage: Stage, *, attempt: int = 1, time_limit_s: float = 1800.0
    ) -> Job | None:
        """Create the task's next job; None if the task already has an active one."""
        task_key = self.keys.task(task_id)
        while True:
            with self.r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(task_key)
                    active = pipe.hget(task_key, "active_job_id")
                    if active:
                        job = self.get_job(active)
                        if job is not None and job.is_active:
                            pipe.reset()
                            return None
                    job = Job(
                        id=self.next_job_id(),
                        task_id=task_id,
                        stage=stage,
                        attempt=attempt,
                        time_limit_s=time_limit_s,
                    )
                    pipe.multi()
                    self.queue_new_job(pipe, job)
                    pipe.hset(task_key, "active_job_id", job.id)
                    pipe.execute()
                    return job
                except WatchError:
                    continue

    def next_job_id(self) -> str:
        return str(self.r.incr(self.keys.job_seq))

    def queue_new_job(self, pipe: Any, job: Job) -> None:
        """The writes of a new job, into `pipe`: its record, the active index, the timeline."""
        pipe.hset(self.keys.job(job.id), mapping=job.to_hash())
        pipe.sadd(self.keys.jobs_active, job.id)
        self._xadd_timeline(
            pipe,
            job.task_id,
            TimelineKind.JOB,
            f"job {job.id} queued for {job.stage.value}",
            {"job_id": job.id},
        )

    def queue_finish(
        self, pipe: Any, job_id: str, outcome: str, state: JobState, error: str | None
    ) -> None:
        """The writes of a job's end, into `pipe`: its outcome, out of the active index."""
        pipe.hset(
            self.keys.job(job_id),
            mapping={
                "state": state.value,
                "outcome": outcome,
                "error": error or "",
                "finished_at": utcnow().isoformat(),
            },
        )
        pipe.srem(self.keys.jobs_active, job_id)

    def get_job(self, job_id: str) -> Job | None:
        data = self.r.hgetall(self.keys.job(job_id))
        return Job.from_hash(data) if data else None

    def active_job(self, task: Task) -> Job | None:
        if not task.active_job_id:
            return None
        job = self.get_job(task.active_job_id)
        return job if job is not None and job.is_active else None

    def update_job(self, job_id: str, **fields: Any) -> Job:
        """Set fields of a job; only these are written (a heartbeat never undoes an end)."""
        job = self.get_job(job_id)
        if job is None:
            raise StoreError(f"job {job_id} does not exist")
        updated = job.model_copy(update=fields)
        flat = updated.to_hash()
        self.r.hset(self.keys.job(job_id), mapping={k: flat[k] for k in fields})
        return updated

    def finish_job(
        self,
        job_id: str,
        outcome: str,
        *,
        state: JobState = JobState.FINISHED,
        error: str | None = None,
    ) -> Job:
        """Record a job's outcome once and free its task's active-job slot."""
        job = self.get_job(job_id)
        if job is None:
            raise StoreError(f"job {job_id} does not exist")
        with self.r.pipeline(transaction=True) as pipe:
            self.queue_finish(pipe, job_id, outcome, state, error)
            # Compare-and-clear so a newer job's slot is never freed by an old one.
            pipe.eval(_CLEAR_IF_EQUAL, 1, self.keys.task(job.task_id), "active_job_id", job_id)
            pipe.execute()
        return job.model_copy(
            update={"state": state, "outcome": outcome, "error": error, "finished_at": utcnow()}
        )

    def active_jobs(self) -> list[Job]:
        """Jobs queued or running, from the `pf:jobs:active` index."""
        ids = self.r.smembers(self.keys.jobs_active)
        jobs = [self.get_job(job_id) for job_id in sorted(ids, key=numeric_order)]
        return [job for job in jobs if job is not None and job.is_active]

    def cancel_job(self, job_id: str) -> Job:
        """Mark a job cancelled (its runner stops the agent when it sees this)."""
        return self.finish_job(job_id, "cancelled", state=JobState.CANCELLED)

    # -- deploy and merge slots --------------------------------------------------
    def take_deploy_slot(self, repo: str, task_id: str, ttl_s: float) -> str | None:
        """Hold the repo's deploy slot for the task (idempotent); else return its holder."""
        return self._take_slot(self.keys.deploy_lock(repo), task_id, ttl_s)

    def release_deploy_slot(self, repo: str, task_id: str) -> None:
        """Free the slot if this task holds it; never another task's."""
        self._release_slot(self.keys.deploy_lock(repo), task_id)

    def take_merge_slot(self, repo: str, task_id: str, ttl_s: float) -> str | None:
        """Hold the repo's merge slot for the task (its TTL renewed when it holds it
        already); else return the holder."""
        return self._take_slot(self.keys.merge_lock(repo), task_id, ttl_s, renew=True)

    def release_merge_slot(self, repo: str, task_id: str) -> None:
        self._release_slot(self.keys.merge_lock(repo), task_id)

    def merge_slot_holder(self, repo: str) -> str | None:
        holder = self.r.get(self.keys.merge_lock(repo))
        return str(holder) if holder else None

    def _take_slot(
        self, key: str, task_id: str, ttl_s: float, *, renew: bool = False
    ) -> str | None:
        """redis-py's Lock with the task id as its token: the slot outlives the job that
        took it and is released by whichever job ends the task's use of it."""
        lock = self.r.lock(key, timeout=ttl_s, thread_local=False)
        if lock.acquire(blocking=False, token=task_id):
            return None
        holder = self.r.get(key)
        if holder != task_id:
            return holder or "?"
        if renew:
            lock.local.token = task_id
            with suppress(LockError):  # lost meanwhile: the next look takes it again
                lock.reacquire()
        return None

    def _release_slot(self, key: str, task_id: str) -> None:
        lock = self.r.lock(key, timeout=3600, thread_local=False)
        lock.local.token = task_id
        with suppress(LockError):  # not held, or held by another task
            lock.release()


_CLEAR_IF_EQUAL = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HSET', KEYS[1], ARGV[1], '')
end
return 0
"""
