"""Durable ingest of verified webhooks: dedup, the `pf:events` stream, the event queue.

`accept` answers what the receiver returns. One Lua call sets the dedup marker (the
SHA-256 of the raw body; Plane's retries resend identical bytes under a new delivery
id) and appends the event to `pf:events`; then the event is enqueued for the worker
and the marker flips from `pending:<id>` to `done:<id>`. When Redis is unreachable
the event goes to the local spool and is still acknowledged; `drain` replays the spool
in order once Redis answers, re-enqueueing events whose marker is still pending.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from app.keys import Keys
from app.queue import Dispatcher
from app.spool import Entry, Spool

log = logging.getLogger(__name__)

_RECORD = """
local existing = redis.call('GET', KEYS[1])
if existing then return {0, existing} end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
redis.call('SET', KEYS[1], 'pending:' .. id, 'EX', ARGV[1])
return {1, id}
"""

PROCESS = "process"
# Entry fields stored in the stream (the body last: it is the long one).
STREAM_FIELDS = (
    "source",
    "event",
    "action",
    "field",
    "project",
    "issue",
    "actor",
    "delivery",
    "sha256",
    "received_at",
    "outcome",
    "spooled",
    "body",
)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


class Ingest:
    def __init__(
        self,
        client: Any,
        keys: Keys,
        dispatcher: Dispatcher,
        spool: Spool,
        *,
        events_maxlen: int = 100_000,
        delivery_ttl_s: int = 7 * 24 * 3600,
        count: Callable[[str, str], None] | None = None,
    ) -> None:
        self.r = client
        self.keys = keys
        self.dispatcher = dispatcher
        self.spool = spool
        self.events_maxlen = events_maxlen
        self.delivery_ttl_s = delivery_ttl_s
        self._count = count or (lambda source, outcome: None)
        self._record = client.register_script(_RECORD)

    def accept(self, entry: Entry) -> Answer:
        """Store one verified event; 202 once durable (Redis or spool), 200 if a duplicate."""
        if self.spool.files():
            # Keep arrival order: while older events wait in the spool, queue behind them.
            return self._spool(entry)
        try:
            answer = self.record(entry)
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
            log.warning("redis unreachable (%s): spooling %s event", exc, entry["source"])
            return self._spool(entry)
        self._count(entry["source"], "duplicate" if answer.status == 200 else entry["outcome"])
        return answer

    def _spool(self, entry: Entry) -> Answer:
        self.spool.append({**entry, "spooled": "1"})
        self._count(entry["source"], "spooled")
        return Answer(202, {"accepted": True, "spooled": True})

    def record(self, entry: Entry, *, from_spool: bool = False) -> Answer:
        marker = self.keys.delivery(entry["sha256"])
        fields: list[str] = []
        for name in STREAM_FIELDS:
            fields += [name, str(entry.get(name) or "")]
        created, value = self._record(
            keys=[marker, self.keys.events], args=[self.delivery_ttl_s, self.events_maxlen, *fields]
        )
        value = value.decode() if isinstance(value, bytes) else str(value)
        if not created:
            state, _, event_id = value.partition(":")
            if not (from_spool and state == "pending"):
                return Answer(200, {"duplicate": True, "event_id": event_id})
        else:
            event_id = value
        if entry["outcome"] == PROCESS:
            self.dispatcher.send(
                entry["queue"],
                entry["actor_name"],
                {**entry.get("payload", {}), "event_id": event_id},
            )
        self.r.set(marker, f"done:{event_id}", keepttl=True)
        if entry["source"] == "plane" and entry["outcome"] != "unknown_project":
            # The webhook-loss meter: when did this project's webhooks last arrive?
            self.r.hset(self.keys.webhooks_last, entry["project"], entry["received_at"])
        return Answer(202, {"accepted": True, "event_id": event_id, "outcome": entry["outcome"]})

    def drain(self) -> int:
        """Replay spooled events into Redis, in order; returns how many were stored."""
        return self.spool.drain(lambda entry: self._drain_one(entry))

    def _drain_one(self, entry: Entry) -> None:
        answer = self.record(entry, from_spool=True)
        self._count(entry["source"], "drained" if answer.status == 202 else "duplicate")
