"""Dramatiq's queues as an operator sees them: depth, delayed and dead-lettered messages.

Dramatiq's Redis broker (2.x) keeps, per queue `q` under its namespace: the list `q` of
ready message ids with their data in the hash `q.msgs`, the delayed queue `q.DQ` (the
same pair), and the dead letters — messages that used up their retries — in the sorted
set `q.XQ` (by when they died) with their data in `q.XQ.msgs`, kept for 7 days. This
module reads those keys (it is, with the broker, the one place that knows them) and
requeues a dead letter: it is taken out of the dead-letter set atomically (so two
operators cannot both requeue it), its retry count and traceback are cleared, and it is
sent again through the broker like any new message.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import dramatiq

from app.keys import Keys
from app.queue import DRAMATIQ_NAMESPACE, EVENTS_QUEUE, JOBS_QUEUE, PLANE_QUEUE, RECONCILE_QUEUE

log = logging.getLogger(__name__)

QUEUES = (EVENTS_QUEUE, JOBS_QUEUE, PLANE_QUEUE, RECONCILE_QUEUE)
DEAD_SHOWN = 50  # dead letters listed per queue

# Take one dead letter out (ZREM decides who owns it) and return its data.
_CLAIM = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return false end
local data = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return data or ''
"""


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    ready: int
    delayed: int
    dead: int


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    message_id: str  # the broker's id for it (`redis_message_id`)
    actor: str
    args: str  # shortened, for a person to recognise the message
    died_at: float  # epoch seconds
    retries: int
    error: str  # the last line of the stored traceback, if any
    arguments: tuple[Any, ...] = ()  # the message's args, as sent


class QueueState:
    def __init__(
        self, client: Any, keys: Keys | None = None, namespace: str = DRAMATIQ_NAMESPACE
    ) -> None:
        self.r = client
        self.keys = keys or Keys()
        self.ns = namespace

    def _key(self, queue: str, suffix: str = "") -> str:
        return f"{self.ns}:{queue}{suffix}"

    def depths(self) -> list[QueueDepth]:
        with self.r.pipeline(transaction=False) as pipe:
            for queue in QUEUES:
                pipe.llen(self._key(queue))
                pipe.llen(self._key(queue, ".DQ"))
                pipe.zcard(self._key(queue, ".XQ"))
            counts = pipe.execute()
        return [
            QueueDepth(queue, *(int(c) for c in counts[i * 3 : i * 3 + 3]))
            for i, queue in enumerate(QUEUES)
        ]

    def dead_letters(self, queue: str, limit: int = DEAD_SHOWN) -> list[DeadLetter]:
        """The newest dead letters of a queue, newest first."""
        if queue not in QUEUES:
            return []
        found = self.r.zrevrange(self._key(queue, ".XQ"), 0, limit - 1, withscores=True)
        if not found:
            return []
        ids = [str(m) for m, _ in found]
        datas = self.r.hmget(self._key(queue, ".XQ.msgs"), ids)
        notes = self.r.mget([self.keys.dead_letter(i) for i in ids])
        return [
            _dead_letter(queue, mid, float(score), data, note)
            for (mid, (_, score)), data, note in zip(
                zip(ids, found, strict=True), datas, notes, strict=True
            )
        ]

    def find_dead(self, message_id: str) -> DeadLetter | None:
        """The dead letter with this broker id, in whichever queue holds it."""
        for queue in QUEUES:
            data = self.r.hget(self._key(queue, ".XQ.msgs"), message_id)
            if data is not None:
                score = self.r.zscore(self._key(queue, ".XQ"), message_id) or 0.0
                note = self.r.get(self.keys.dead_letter(message_id))
                return _dead_letter(queue, message_id, float(score), data, note)
        return None

    def requeue(self, broker: dramatiq.Broker, dead: DeadLetter) -> str | None:
        """Send a dead letter again (retries cleared); its new broker id, or None when it
        is no longer dead-lettered (requeued by someone else, or expired)."""
        data = self.r.eval(
            _CLAIM,
            2,
            self._key(dead.queue, ".XQ"),
            self._key(dead.queue, ".XQ.msgs"),
            dead.message_id,
        )
        if data is None or data is False:
            return None
        try:
            message = _fresh(dead.queue, str(data))
            sent = broker.enqueue(message)
        except Exception:
            # Put it back as it was, so nothing is lost; the caller reports the error.
            with self.r.pipeline(transaction=True) as pipe:
                pipe.zadd(self._key(dead.queue, ".XQ"), {dead.message_id: dead.died_at * 1000})
                pipe.hset(self._key(dead.queue, ".XQ.msgs"), dead.message_id, str(data))
                pipe.execute()
            raise
        self.r.delete(self.keys.dead_letter(dead.message_id))
        return str(sent.options.get("redis_message_id", sent.message_id))


def _fresh(queue: str, data: str) -> dramatiq.Message[Any]:
    """The dead message as a new one on its queue: no retry count, traceback or eta."""
    raw = json.loads(data)
    options = {
        k: v
        for k, v in (raw.get("options") or {}).items()
        if k not in ("retries", "traceback", "eta", "redis_message_id")
    }
    return dramatiq.Message(
        queue_name=queue,
        actor_name=str(raw["actor_name"]),
        args=tuple(raw.get("args") or ()),
        kwargs=dict(raw.get("kwargs") or {}),
        options=options,
        message_id=str(raw.get("message_id") or ""),
        # now, or AgeLimit would drop a message that died more than a day ago
        message_timestamp=int(time.time() * 1000),
    )


def _dead_letter(
    queue: str, message_id: str, score: float, data: Any, note: Any = None
) -> DeadLetter:
    try:
        raw = json.loads(data) if data else {}
    except ValueError:
        raw = {}
    options = raw.get("options") or {}
    trace = str(options.get("traceback") or "").strip().splitlines()
    args = json.dumps(raw.get("args", []))[:160]
    return DeadLetter(
        queue=queue,
        message_id=message_id,
        actor=str(raw.get("actor_name", "?")),
        args=args,
        died_at=score / 1000,  # dramatiq scores by milliseconds
        retries=int(options.get("retries") or 0),
        error=str(note)[:300] if note else (trace[-1][:300] if trace else ""),
        arguments=tuple(raw.get("args") or ()),
    )
