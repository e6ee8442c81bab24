"""Concurrency caps (global, per project, per repo) and the lifetime budget of a work item.

A running job holds one member in three sorted sets (`pf:slots:*`), scored by its last
heartbeat; members whose heartbeat is older than `stale_s` no longer count, so a dead
worker cannot hold a slot forever. Taking the three slots is one Lua call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from app.domain.models import Task
from app.keys import Keys
from app.projects import Project

_TAKE = """
local now, stale, member = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - stale)
end
for i = 1, #KEYS do
  if not redis.call('ZSCORE', KEYS[i], member) then
    if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[3 + i]) then return i end
  end
end
for i = 1, #KEYS do redis.call('ZADD', KEYS[i], now, member) end
return 0
"""
SCOPES = ("global", "project", "repo")


@dataclass(frozen=True)
class Slot:
    keys: tuple[str, ...]
    member: str


class Caps:
    def __init__(
        self,
        client: object,
        keys: Keys,
        *,
        total: int,
        per_project: int,
        per_repo: int,
        stale_s: float = 90.0,
    ) -> None:
        self.r = client
        self.keys = keys
        self.limits = (total, per_project, per_repo)
        self.stale_s = stale_s
        self._take = client.register_script(_TAKE)  # type: ignore[attr-defined]

    def take(self, job_id: str, project: Project) -> tuple[Slot | None, str]:
        """A slot for the job, or None and which cap is full."""
        keys = (
            self.keys.slots("global"),
            self.keys.slots(f"project:{project.name}"),
            self.keys.slots(f"repo:{project.repo}"),
        )
        full = int(
            self._take(keys=list(keys), args=[time.time(), self.stale_s, job_id, *self.limits])
        )
        if full:
            return None, f"{SCOPES[full - 1]} cap of {self.limits[full - 1]} running job(s)"
        return Slot(keys, job_id), ""

    def beat(self, slot: Slot) -> None:
        for key in slot.keys:
            self.r.zadd(key, {slot.member: time.time()}, xx=True)  # type: ignore[attr-defined]

    def release(self, slot: Slot) -> None:
        for key in slot.keys:
            self.r.zrem(key, slot.member)  # type: ignore[attr-defined]


def budget_exhausted(task: Task, project: Project) -> str | None:
    """The reason the work item's lifetime budget is spent, or None."""
    b = project.budget
    if b.attempts and task.attempts_used >= b.attempts:
        return f"budget exhausted: {task.attempts_used} agent attempts (limit {b.attempts})"
    if b.agent_seconds and task.agent_seconds >= b.agent_seconds:
        return (
            f"budget exhausted: {task.agent_seconds:.0f} agent seconds "
            f"(limit {b.agent_seconds:.0f})"
        )
    if b.tokens and task.tokens_used >= b.tokens:
        return f"budget exhausted: {task.tokens_used} tokens (limit {b.tokens})"
    return None
