"""Redis repository: tasks, jobs, timelines, locks and the anti-dup index.

Key names come from `app.keys`. Every multi-key change is one MULTI/EXEC so a
reader never sees a task in two stage sets. Locks are redis-py's own `Lock` (owner
token + TTL; release is a compare-and-delete, so we never free someone else's lock).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import LockError, LockNotOwnedError, WatchError
from redis.retry import Retry

from app.domain.errors import StoreError
from app.domain.models import Job, JobState, Task, utcnow
from app.domain.stages import Stage
from app.keys import Keys

log = logging.getLogger(__name__)

Redis = redis.Redis
TIMELINE_MAXLEN = 2000


def connect(url: str) -> Redis:
    """A client that speaks str (decode_responses); the broker keeps its own client.

    Retries are short on purpose: when Redis is down the receiver must fall back to its
    spool within a fraction of a second, not after redis-py's default backoff.
    """
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        health_check_interval=30,
        socket_connect_timeout=2,
        socket_timeout=10,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
    )


class Store:
    """All of planeflow's own Redis state, behind small explicit operations."""

    def __init__(
        self,
        client: Redis,
        keys: Keys | None = None,
        *,
        lock_ttl_s: float = 30.0,
        lock_wait_s: float = 10.0,
    ) -> None:
        # Any: redis-py types every reply as bytes|str whatever decode_responses says.
        self.r: Any = client
        self.keys = keys or Keys()
        self.lock_ttl_s = lock_ttl_s
        self.lock_wait_s = lock_wait_s

    # -- locks ------------------------------------------------------------------
    @contextmanager
    def lock(self, name: str, *, ttl_s: float | None = None) -> Iterator[None]:
        """Hold the Redis lock `name`; StoreError if it is not ours within lock_wait_s."""
        lk = self.r.lock(
            name,
            timeout=ttl_s or self.lock_ttl_s,
            blocking_timeout=self.lock_wait_s,
            thread_local=False,
        )
        if not lk.acquire():
            raise StoreError(
                f"lock {name!r} still held by another owner after {self.lock_wait_s:g}s"
            )
        try:
            yield
        finally:
            try:
                lk.release()
            except LockNotOwnedError:
                # Our TTL ran out and someone else may hold it now: leave theirs alone.
                log.warning("lock %s expired before release (critical section too long)", name)
                self.incr_counter("lock_expired")
            except LockError as exc:
                log.warning("lock %s release failed: %s", name, exc)

    @contextmanager
    def issue_lock(self, plane_issue_id: str) -> Iterator[None]:
        """Serialise the handlers of one work item."""
        with self.lock(self.keys.issue_lock(plane_issue_id)):
            yield

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
                            pipe, task_id, "created", f"task created in stage {task.stage.value}"
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
            ids = sorted(self.r.smembers(self.keys.tasks_in_stage(stage.value)), key=_num)
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
                    pipe.hset(key, mapping=updated.to_hash())
                    pipe.smove(
                        self.keys.tasks_in_stage(task.stage.value),
                        self.keys.tasks_in_stage(stage.value),
                        task_id,
                    )
                    pipe.sadd(self.keys.tasks_in_stage(stage.value), task_id)
                    # The Plane outbox shows every stage in order when the budget allows.
                    pipe.rpush(self.keys.outbox_statuses(task_id), stage.value)
                    pipe.ltrim(self.keys.outbox_statuses(task_id), -50, -1)
                    self._xadd_timeline(
                        pipe,
                        task_id,
                        "transition",
                        f"{task.stage.value} -> {stage.value}: {reason}",
                        {"from": task.stage.value, "to": stage.value},
                    )
                    pipe.execute()
                    return updated
                except WatchError:
                    continue

    def _require_task(self, task_id: str) -> Task:
        task = self.get_task(task_id)
        if task is None:
            raise StoreError(f"task {task_id} does not exist")
        return task

    # -- timeline ---------------------------------------------------------------
    def _xadd_timeline(
        self, pipe: Any, task_id: str, kind: str, message: str, extra: dict[str, str] | None = None
    ) -> None:
        fields = {"ts": utcnow().isoformat(), "kind": kind, "message": message, **(extra or {})}
        pipe.xadd(self.keys.task_log(task_id), fields, maxlen=TIMELINE_MAXLEN, approximate=True)

    def record(self, task_id: str, kind: str, message: str, **extra: str) -> None:
        """Append one decision to the task's timeline stream."""
        self._xadd_timeline(self.r, task_id, kind, message, extra)

    def timeline(self, task_id: str) -> list[dict[str, str]]:
        return [
            dict(fields, id=entry_id)
            for entry_id, fields in self.r.xrange(self.keys.task_log(task_id))
        ]

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
                        id=str(self.r.incr(self.keys.job_seq)),
                        task_id=task_id,
                        stage=stage,
                        attempt=attempt,
                        time_limit_s=time_limit_s,
                    )
                    pipe.multi()
                    pipe.hset(self.keys.job(job.id), mapping=job.to_hash())
                    pipe.sadd(self.keys.jobs_active, job.id)
                    pipe.hset(task_key, "active_job_id", job.id)
                    self._xadd_timeline(
                        pipe,
                        task_id,
                        "job",
                        f"job {job.id} queued for {stage.value}",
                        {"job_id": job.id},
                    )
                    pipe.execute()
                    return job
                except WatchError:
                    continue

    def get_job(self, job_id: str) -> Job | None:
        data = self.r.hgetall(self.keys.job(job_id))
        return Job.from_hash(data) if data else None

    def active_job(self, task: Task) -> Job | None:
        if not task.active_job_id:
            return None
        job = self.get_job(task.active_job_id)
        return job if job is not None and job.is_active else None

    def update_job(self, job_id: str, **fields: Any) -> Job:
        job = self.get_job(job_id)
        if job is None:
            raise StoreError(f"job {job_id} does not exist")
        updated = job.model_copy(update=fields)
        self.r.hset(self.keys.job(job_id), mapping=updated.to_hash())
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
        job = self.update_job(
            job_id, state=state, outcome=outcome, error=error, finished_at=utcnow()
        )
        task_key = self.keys.task(job.task_id)
        # Compare-and-clear so a newer job's slot is never freed by an old one.
        self.r.eval(_CLEAR_IF_EQUAL, 1, task_key, "active_job_id", job_id)
        self.r.srem(self.keys.jobs_active, job_id)
        return job

    def active_jobs(self) -> list[Job]:
        """Jobs queued or running, from the `pf:jobs:active` index."""
        ids = self.r.smembers(self.keys.jobs_active)
        jobs = [self.get_job(job_id) for job_id in sorted(ids, key=_num)]
        return [job for job in jobs if job is not None and job.is_active]

    def cancel_job(self, job_id: str) -> Job:
        """Mark a job cancelled (its runner stops the agent when it sees this)."""
        return self.finish_job(job_id, "cancelled", state=JobState.CANCELLED)

    # -- deploy slot -------------------------------------------------------------
    def _deploy_lock(self, repo: str, ttl_s: float = 3600) -> Any:
        return self.r.lock(self.keys.deploy_lock(repo), timeout=ttl_s, thread_local=False)

    def take_deploy_slot(self, repo: str, task_id: str, ttl_s: float) -> str | None:
        """Hold the repo's deploy slot for the task (idempotent); else return its holder.

        redis-py's Lock with the task id as its token: the slot outlives the job that
        took it and is released by whichever job ends the task's deploy.
        """
        if self._deploy_lock(repo, ttl_s).acquire(blocking=False, token=task_id):
            return None
        holder = self.r.get(self.keys.deploy_lock(repo))
        return None if holder == task_id else (holder or "?")

    def release_deploy_slot(self, repo: str, task_id: str) -> None:
        """Free the slot if this task holds it; never another task's."""
        lock = self._deploy_lock(repo)
        lock.local.token = task_id
        with suppress(LockError):  # not held, or held by another task
            lock.release()

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

    def stored_events(self, start: str = "-", end: str = "+") -> list[tuple[str, dict[str, str]]]:
        """`pf:events` entries (id, fields) between two stream ids, inclusive."""
        return [(str(i), dict(f)) for i, f in self.r.xrange(self.keys.events, start, end)]

    def own_user(self) -> str | None:
        value = self.r.get(self.keys.plane_me)
        return str(value) if value else None

    def remember_own_user(self, user_id: str) -> None:
        self.r.set(self.keys.plane_me, user_id)

    # -- Plane states cache (app.plane.status.StateResolver) --------------------------
    def cached_states(self, project: str) -> str | None:
        value = self.r.hget(self.keys.plane_states(project), "states")
        return str(value) if value else None

    def cache_states(self, project: str, mapping: dict[str, str], ttl_s: int) -> None:
        key = self.keys.plane_states(project)
        with self.r.pipeline() as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=mapping)
            pipe.expire(key, ttl_s)
            pipe.execute()

    # -- event folding ------------------------------------------------------------
    def clear_fold(self, plane_issue_id: str, event_id: str) -> bool:
        """The worker starts `event_id`: later deliveries of the work item queue anew.

        Compare-and-delete: a marker that names a newer event (a human's delivery queued
        behind one of our echoes) stays. True when the marker was ours and is gone.
        """
        return bool(self.r.eval(_CLEAR_FOLD, 1, self.keys.fold(plane_issue_id), event_id + "|"))

    # -- counters ---------------------------------------------------------------
    def incr_counter(self, name: str, amount: int = 1) -> None:
        self.r.hincrby(self.keys.counters, name, amount)

    def counters(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.r.hgetall(self.keys.counters).items()}


_CLEAR_IF_EQUAL = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HSET', KEYS[1], ARGV[1], '')
end
return 0
"""


_CLEAR_FOLD = """
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[1])) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _num(value: str) -> tuple[int, str]:
    return (int(value), value) if value.isdigit() else (0, value)


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
