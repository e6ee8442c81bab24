"""The operator's state: the audit trail of actions, work items by name, Plane members."""

from __future__ import annotations

from app.domain.models import Job, Task, utcnow
from app.domain.stages import FINISHED_STAGES, Stage
from app.store.base import numeric_order
from app.store.tasks import TasksMixin

AUDIT_MAXLEN = 2000


class OperatorMixin(TasksMixin):
    # -- the audit trail ----------------------------------------------------------
    def record_action(self, action: str, target: str, origin: str, result: str) -> None:
        """One operator action (retry, cancel, requeue, a comment's command), kept in
        `pf:audit` with where it came from and what it did."""
        fields = {
            "ts": utcnow().isoformat(),
            "action": action,
            "target": target,
            "origin": origin,
            "result": result[:500],
        }
        self.r.xadd(self.keys.audit, fields, maxlen=AUDIT_MAXLEN, approximate=True)

    def recent_actions(self, count: int = 20) -> list[dict[str, str]]:
        """The newest actions first."""
        return [
            dict(fields, id=str(entry_id))
            for entry_id, fields in self.r.xrevrange(self.keys.audit, count=count)
        ]

    # -- lookups ----------------------------------------------------------------
    def find_task(self, work_item_id: str) -> Task | None:
        """The task of a work item named like `DEMO-12` (any case); the newest if a
        work item ever had several."""
        wanted = work_item_id.strip().upper()
        found = [t for t in self.list_tasks() if t.work_item_id.upper() == wanted]
        return max(found, key=lambda t: t.created_at) if found else None

    def stored_event(self, event_id: str) -> dict[str, str] | None:
        """One `pf:events` entry's fields, or None (unknown, or trimmed)."""
        entries = self.r.xrange(self.keys.events, event_id, event_id)
        return dict(entries[0][1]) if entries else None

    # -- Plane project members (who may give a command in a comment) --------------------
    def cached_members(self, plane_project_id: str) -> set[str] | None:
        """The members Plane last listed, or None when that list has expired."""
        key = self.keys.plane_members(plane_project_id)
        with self.r.pipeline(transaction=False) as pipe:
            pipe.exists(key)
            pipe.smembers(key)
            exists, members = pipe.execute()
        return {str(m) for m in members} - {""} if exists else None

    def remember_members(self, plane_project_id: str, members: set[str], ttl_s: int) -> None:
        key = self.keys.plane_members(plane_project_id)
        with self.r.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.sadd(key, "", *members)  # "": an empty list is remembered too
            pipe.expire(key, ttl_s)
            pipe.execute()

    def may_ask_members(self, plane_project_id: str, every_s: int = 60) -> bool:
        """True at most once per `every_s` per project (a refresh after a miss)."""
        key = self.keys.plane_members_asked(plane_project_id)
        return bool(self.r.set(key, "1", nx=True, ex=every_s))

    def timeline_after(
        self, task_id: str, after: str, block_ms: int = 5000
    ) -> list[dict[str, str]]:
        """Timeline entries newer than stream id `after`, waiting up to `block_ms`."""
        found = self.r.xread({self.keys.task_log(task_id): after}, block=block_ms, count=500)
        return [dict(fields, id=str(i)) for _, entries in found or [] for i, fields in entries]

    def jobs_by_id(self, job_ids: list[str]) -> dict[str, Job]:
        """Several jobs in one round trip (the ones that still exist)."""
        if not job_ids:
            return {}
        with self.r.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self.keys.job(job_id))
            found = pipe.execute()
        return {jid: Job.from_hash(d) for jid, d in zip(job_ids, found, strict=True) if d}

    def plane_budget_remaining(self, key_digest: str = "") -> int | None:
        """X-RateLimit-Remaining of Plane's last answer for the default key (or the key
        with this digest), as the budget kept it; None before any answer."""
        suffix = f":{key_digest}" if key_digest else ""
        value = self.r.hget(f"{self.keys.plane_rate}{suffix}:state", "remaining")
        return int(value) if value not in (None, "") else None

    def board_tasks(self, newest_finished: int) -> tuple[list[Task], dict[str, int]]:
        """The tasks a board shows and the count per stage: every live task, and of
        each finished stage only the `newest_finished` newest (by task id, which grows
        with creation), so a board of thousands of done cards stays cheap to read."""
        stages = [stage.value for stage in Stage]
        with self.r.pipeline(transaction=False) as pipe:
            for stage in stages:
                pipe.smembers(self.keys.tasks_in_stage(stage))
            members = dict(zip(stages, pipe.execute(), strict=True))
        ids: list[str] = []
        for stage, found in members.items():
            ordered = sorted((str(i) for i in found), key=numeric_order, reverse=True)
            finished = Stage(stage) in FINISHED_STAGES
            ids += ordered[:newest_finished] if finished else ordered
        with self.r.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.hgetall(self.keys.task(task_id))
            tasks = [Task.from_hash(d) for d in pipe.execute() if d]
        return tasks, {stage: len(found) for stage, found in members.items()}

    def last_timeline_ids(self, task_ids: list[str]) -> dict[str, str]:
        """Each task's newest timeline entry id (one round trip), so a view can tell a
        task whose record grew without its stage changing."""
        with self.r.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.xrevrange(self.keys.task_log(task_id), count=1)
            found = pipe.execute()
        return {tid: str(e[0][0]) for tid, e in zip(task_ids, found, strict=True) if e}
