"""Small shared state: stored events, our Plane user, the states cache, event folding,
counters."""

from __future__ import annotations

from app.store.base import StoreBase


class SharedMixin(StoreBase):
    def stored_events(self, start: str = "-", end: str = "+") -> list[tuple[str, dict[str, str]]]:
        """`pf:events` entries (id, fields) between two stream ids, inclusive."""
        return [(str(i), dict(f)) for i, f in self.r.xrange(self.keys.events, start, end)]

    def snapshot_event(self, plane_issue_id: str) -> tuple[str, dict[str, str]] | None:
        """The stored event that holds the work item's newest human snapshot (its id and
        fields), or None when there is none (or it was trimmed from `pf:events`)."""
        marker = self.r.get(self.keys.snapshot(plane_issue_id))
        _, _, event_id = str(marker or "").partition("|")
        if not event_id:
            return None
        entries = self.r.xrange(self.keys.events, event_id, event_id)
        return (str(entries[0][0]), dict(entries[0][1])) if entries else None

    def own_user(self) -> str | None:
        value = self.r.get(self.keys.plane_me)
        return str(value) if value else None

    def remember_own_user(self, user_id: str) -> None:
        with self.r.pipeline() as pipe:
            pipe.set(self.keys.plane_me, user_id)
            pipe.sadd(self.keys.plane_users, user_id)
            pipe.execute()

    def key_user(self, key_digest: str) -> str | None:
        """The Plane user of an API key (by its digest), as asked before."""
        value = self.r.hget(self.keys.plane_key_users, key_digest)
        return str(value) if value else None

    def remember_key_user(self, key_digest: str, user_id: str) -> None:
        with self.r.pipeline() as pipe:
            pipe.hset(self.keys.plane_key_users, key_digest, user_id)
            pipe.sadd(self.keys.plane_users, user_id)
            pipe.execute()

    def own_users(self) -> set[str]:
        return {str(u) for u in self.r.smembers(self.keys.plane_users)}

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
        return bool(self.r.eval(_DEL_IF_PREFIX, 1, self.keys.fold(plane_issue_id), event_id + "|"))

    def human_event_started(self, plane_issue_id: str, event_id: str, ttl_s: int = 120) -> None:
        self.r.set(self.keys.human_event(plane_issue_id), event_id, ex=ttl_s)

    def human_event_done(self, plane_issue_id: str, event_id: str) -> None:
        self.r.eval(_DEL_IF_PREFIX, 1, self.keys.human_event(plane_issue_id), event_id)

    def human_move_pending(self, plane_issue_id: str) -> bool:
        """A human's move of the work item is queued or being processed right now."""
        with self.r.pipeline() as pipe:
            pipe.get(self.keys.fold(plane_issue_id))
            pipe.exists(self.keys.human_event(plane_issue_id))
            queued, running = pipe.execute()
        return bool(running) or (bool(queued) and str(queued).endswith("|0"))

    # -- counters ---------------------------------------------------------------
    def incr_counter(self, name: str, amount: int = 1) -> None:
        self.r.hincrby(self.keys.counters, name, amount)

    def counters(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.r.hgetall(self.keys.counters).items()}

    def observe(self, metric: str, label: str, seconds: float) -> None:
        """One timed observation (a job's duration per stage, a webhook's lag)."""
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hincrbyfloat(self.keys.observations, f"{metric}|{label}|sum", seconds)
            pipe.hincrby(self.keys.observations, f"{metric}|{label}|count", 1)
            pipe.execute()


_DEL_IF_PREFIX = """
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[1])) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
