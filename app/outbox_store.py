"""The Plane outbox's Redis state: what planeflow still has to tell Plane, per task.

Three things wait here. *Statuses*: every move of a task pushes its new stage (in the
move's own transaction, so in order); the flusher shows each one when the budget has
room at once and otherwise only the latest, which is always the task's stage as it is
then (an older status is never written after a newer one). *Comments*
are kept in order, each with its `external_id` (`planeflow-<task>-<n>`), until Plane has
accepted them. *Notes*: what each milestone has to say, gathered into one digest comment
when the task is ready for review and when it ends (done or blocked), so a card gets
two comments on its happy path, not one per stage. `pf:outbox:due` says when each
task's writes should be tried next.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from redis.exceptions import WatchError

from app.domain.models import utcnow
from app.keys import Keys

# Remove the task from the due set only if nobody scheduled it after `started`.
_SETTLE = """
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if at and tonumber(at) <= tonumber(ARGV[2]) and redis.call('LLEN', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  return 1
end
return 0
"""
# Pop the head comment only if it is the one that was sent.
_POP_IF_HEAD = """
local head = redis.call('LINDEX', KEYS[1], 0)
if head and cjson.decode(head)['key'] == ARGV[1] then
  redis.call('LPOP', KEYS[1])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class PendingComment:
    key: str  # the external_id Plane deduplicates on
    html: str
    queued_at: str
    tries: int = 0
    error: str = ""

    def to_json(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"))


class OutboxStore:
    def __init__(self, client: Any, keys: Keys) -> None:
        self.r = client
        self.keys = keys

    # -- adding (inside the decision's transaction when `pipe` is given) ---------------
    def new_comment(self, task_id: str, html: str, external_id: str = "") -> PendingComment:
        """A comment with the next id of the task's counter (not queued yet), or with
        `external_id` when the caller has a stable one (a reply to a given comment)."""
        if external_id:
            return PendingComment(external_id, html, utcnow().isoformat())
        seq = int(self.r.incr(self.keys.outbox_seq(task_id)))
        return PendingComment(f"planeflow-{task_id}-{seq}", html, utcnow().isoformat())

    def queue_comment(self, target: Any, task_id: str, comment: PendingComment) -> None:
        """Queue `comment` (into a pipeline, or at once with the client) and schedule."""
        target.rpush(self.keys.outbox_comments(task_id), comment.to_json())
        target.zadd(self.keys.outbox_due, {task_id: time.time()})

    def add_comment(self, task_id: str, html: str, external_id: str = "") -> None:
        self.queue_comment(self.r, task_id, self.new_comment(task_id, html, external_id))

    def add_note(self, task_id: str, html: str) -> None:
        """Keep a milestone's note for the task's next digest comment."""
        self.r.rpush(self.keys.outbox_notes(task_id), html)

    def post_notes(self, task_id: str, lead: str = "") -> bool:
        """Queue one comment: `lead`, then the notes gathered since the last digest (all
        taken in the same transaction). False when there was nothing to say."""
        notes_key = self.keys.outbox_notes(task_id)
        while True:
            with self.r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(notes_key)
                    notes = [str(n) for n in pipe.lrange(notes_key, 0, -1)]
                    if not lead and not notes:
                        return False
                    comment = self.new_comment(task_id, lead + "".join(notes))
                    pipe.multi()
                    self.queue_comment(pipe, task_id, comment)
                    pipe.delete(notes_key)
                    pipe.execute()
                    return True
                except WatchError:
                    continue

    def schedule(self, task_id: str, at: float | None = None, *, pipe: Any = None) -> None:
        """Have the task's writes tried at `at` (now by default)."""
        target = pipe if pipe is not None else self.r
        target.zadd(self.keys.outbox_due, {task_id: time.time() if at is None else at})

    # -- the flusher ------------------------------------------------------------------
    def lock(self, task_id: str, ttl_s: float = 300) -> Any:
        """One flusher per task at a time (redis-py Lock)."""
        return self.r.lock(self.keys.outbox_lock(task_id), timeout=ttl_s, thread_local=False)

    def head(self, task_id: str) -> PendingComment | None:
        raw = self.r.lindex(self.keys.outbox_comments(task_id), 0)
        return PendingComment(**json.loads(raw)) if raw else None

    def pop(self, task_id: str, key: str) -> bool:
        return bool(self.r.eval(_POP_IF_HEAD, 1, self.keys.outbox_comments(task_id), key))

    def tried(self, task_id: str, comment: PendingComment, error: str) -> None:
        """Record a failed attempt on the head comment (if it still is the head)."""
        updated = PendingComment(
            comment.key, comment.html, comment.queued_at, comment.tries + 1, error[:300]
        )
        with self.r.pipeline() as pipe:
            head = self.head(task_id)
            if head is not None and head.key == comment.key:
                pipe.lset(self.keys.outbox_comments(task_id), 0, updated.to_json())
                pipe.execute()

    def pending(self, task_id: str) -> list[PendingComment]:
        raws = self.r.lrange(self.keys.outbox_comments(task_id), 0, -1)
        return [PendingComment(**json.loads(raw)) for raw in raws]

    def stages(self, task_id: str) -> list[str]:
        """Stages moved into since the last status flush, oldest first."""
        return list(self.r.lrange(self.keys.outbox_statuses(task_id), 0, -1))

    def snapshot(self, task_id: str) -> tuple[dict[str, str], list[str]]:
        """The task's hash and its moved-into stages, read in one transaction (so the
        last stage listed is the task's stage in that hash)."""
        with self.r.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.keys.task(task_id))
            pipe.lrange(self.keys.outbox_statuses(task_id), 0, -1)
            data, stages = pipe.execute()
        return dict(data), list(stages)

    def consume_stages(self, task_id: str, count: int) -> None:
        """Forget the first `count` stages (shown, or passed over); later ones stay."""
        if count:
            self.r.ltrim(self.keys.outbox_statuses(task_id), count, -1)

    def drop_all(self, task_id: str) -> int:
        """Forget the task's pending comments (its work item is gone); returns how many."""
        with self.r.pipeline() as pipe:
            pipe.llen(self.keys.outbox_comments(task_id))
            pipe.delete(
                self.keys.outbox_comments(task_id),
                self.keys.outbox_statuses(task_id),
                self.keys.outbox_notes(task_id),
            )
            count, _ = pipe.execute()
        return int(count)

    def failed(self, task_id: str) -> int:
        """Count one more failed flush in a row; returns the count (for the backoff)."""
        return int(self.r.hincrby(self.keys.outbox_tries, task_id, 1))

    def settle(self, task_id: str, started: float) -> bool:
        """Nothing left to send, and nothing scheduled since `started`: forget the task."""
        keys = [self.keys.outbox_due, self.keys.outbox_comments(task_id), self.keys.outbox_tries]
        return bool(self.r.eval(_SETTLE, 3, *keys, task_id, started))

    def due(self, before: float, limit: int = 500) -> list[str]:
        """Tasks whose writes should have been tried by `before`."""
        return list(self.r.zrangebyscore(self.keys.outbox_due, "-inf", before, 0, limit))

    def scheduled_at(self, task_id: str) -> float | None:
        at = self.r.zscore(self.keys.outbox_due, task_id)
        return None if at is None else float(at)

    def is_settled(self, task_id: str) -> bool:
        """Nothing of the task's waits for Plane."""
        return self.r.zscore(self.keys.outbox_due, task_id) is None and not self.r.llen(
            self.keys.outbox_comments(task_id)
        )

    def waiting(self) -> int:
        return int(self.r.zcard(self.keys.outbox_due))
