"""Durable ingest of verified webhooks: one Redis script call per batch, the spool otherwise.

This is the receiver's fast path and, with the store, the one place that talks to Redis
directly (through `redis.asyncio`, on the event loop: no executor hop). Concurrent
requests are grouped: while one batch's script runs, the next requests wait in a list,
and they go together in the next call (group commit), up to `max_batch` events and
`max_batch_bytes` of bodies. No request is answered before its batch's reply (or its
spool fsync) is back.

For each event the script, atomically: checks the dedup marker `pf:delivery:<digest>`
(the verified signature: Plane's retries resend identical bytes; an existing marker means
a duplicate), appends
the event to `pf:events`, writes its Dramatiq message (the `.msgs` hash and the queue
list, exactly as dramatiq's RedisBroker does), and records the project's last-webhook
time. So there is never an acknowledged event without its message.

A state delivery for a work item whose `process_event` is still queued folds into it
(`pf:fold:<issue>`: one Plane read for a burst of edits, not one per edit). The worker
clears the marker when it starts the event. A delivery from our own Plane user never
absorbs a human's: the human's gets its own message.

When Redis fails or answers slowly (a deadline per batch, `timeout_s`: a hung Redis
costs about a second) the batch goes to the spool (one fsync) and is acknowledged;
while anything waits in the spool, new events queue behind it, and the drainer moves
them into Redis in order through the same script.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app.ingest_event import RECEIVED, Event, EventMaker, encode_metas, entry_of
from app.ingest_line import Deadline, IngestLine
from app.ingest_script import RECORD_BATCH, SPOOLED, Answer, answer_of, stored_answer
from app.keys import Keys
from app.spool import Entry, Spool

log = logging.getLogger(__name__)

REDIS_ERRORS = (redis.RedisError, OSError, asyncio.TimeoutError)

# The slowest Redis a batch of big bodies is given time for, beyond `timeout_s` (a 4 MB
# batch took about 0.2 s here, with the other core busy): a hung Redis still spools
# within about a second, and a batch of big bodies is not taken for a hung Redis.
MIN_BYTES_PER_S = 10 * 1024 * 1024

_second: list[Any] = [0, ""]  # the last whole second seen and its ISO text


def now_iso(now: float | None = None) -> str:
    """A time (default: now) in ISO 8601 (UTC, microseconds), each second's text made once."""
    if now is None:
        now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[:] = [second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")]
    return f"{_second[1]}.{int((now - second) * 1e6):06d}+00:00"


def connect_async(url: str, *, timeout_s: float = 0.5) -> aioredis.Redis:
    """The ingest client: short timeouts and no retries, so a hung Redis spools fast
    (the batch script's own connection keeps the connect timeout; `Ingest.record`'s
    deadline replaces the socket timeout there)."""
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry_on_timeout=False,
        # One immediate retry on a dropped connection (a Redis restart, fakeredis's TCP
        # server after an error reply); a timeout is never retried: the spool is faster.
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        max_connections=8,
    )


def fit(events: list[Event], max_bytes: int) -> int:
    """How many of `events`, from the first, make one batch: their bodies within
    `max_bytes` together, and always at least one (a body is never split)."""
    total = 0
    for n, event in enumerate(events):
        total += len(event.body)
        if total > max_bytes and n:
            return n
    return len(events)


class Ingest:
    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        spool: Spool,
        *,
        own_user_id: str | None = None,
        events_maxlen: int = 100_000,
        delivery_ttl_s: int = 7 * 24 * 3600,
        fold_ttl_s: int = 600,
        timeout_s: float = 1.0,
        max_batch: int = 256,
        max_batch_bytes: int = 4 * 1024 * 1024,
        count: Callable[[str, str, int], None] | None = None,
    ) -> None:
        self.r = client
        self.keys = keys
        self.spool = spool
        self.own_user_id = own_user_id or ""
        self.events_maxlen = events_maxlen
        self.delivery_ttl_s = delivery_ttl_s
        self.fold_ttl_s = fold_ttl_s
        self.timeout_s = timeout_s
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self._count = count or (lambda source, outcome, n: None)
        self._sha = hashlib.sha1(RECORD_BATCH.encode()).hexdigest()
        self._script_keys = (keys.events, keys.webhooks_last, keys.plane_me, keys.plane_users)
        self._make = EventMaker(keys)
        self._waiting: list[tuple[Event, asyncio.Future[Answer]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Held while deciding "Redis or spool" and while claiming a spool file, so a
        # batch never reaches Redis ahead of older events still waiting in the spool.
        self._order = asyncio.Lock()
        self._line = IngestLine(client.connection_pool)
        # The spool's file work, in a thread of its own: no other work of the process
        # (a /metrics scrape waiting on a hung Redis, say) can hold a webhook's answer.
        self._disk = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pf-spool")

    # -- the request path --------------------------------------------------------------
    async def accept(self, event: Event) -> Answer:
        """Store one verified event; 202 once durable (Redis or spool), 200 if a duplicate."""
        loop = self._loop
        if loop is None:  # the serving loop, looked up once (each lookup is a getpid call)
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._waiting.append((event, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._waiting:
            n = fit([event for event, _ in self._waiting[: self.max_batch]], self.max_batch_bytes)
            batch = self._waiting[:n]
            del self._waiting[:n]
            try:
                async with self._order:
                    answers = await self._commit([event for event, _ in batch])
            except Exception as exc:  # the spool failed too (disk full, ...): say so
                log.exception("ingest: %d event(s) could not be stored anywhere", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():
                    future.set_result(answer)

    async def _commit(self, events: list[Event]) -> list[Answer]:
        if not self.spool.has_backlog:
            try:
                answers = await self.record(events)
            except REDIS_ERRORS as exc:
                log.warning(
                    "redis unavailable (%s: %s): spooling %d event(s)",
                    type(exc).__name__,
                    exc,
                    len(events),
                )
            else:
                self._tally(events, [answer.outcome for answer in answers])
                return answers
        received_at = now_iso()
        records = []
        for event in events:
            record = entry_of(event)
            record.update(spooled="1", received_at=record["received_at"] or received_at)
            records.append(record)
        await asyncio.get_running_loop().run_in_executor(self._disk, self.spool.append, records)
        self._tally(events, ["spooled"] * len(events))
        return [SPOOLED] * len(events)

    def _tally(self, events: list[Event], outcomes: list[str]) -> None:
        """Count a batch's outcomes: one counter step per distinct outcome, not per event."""
        tally: dict[tuple[str, str], int] = {}
        for event, outcome in zip(events, outcomes, strict=True):
            key = (event.source, outcome)
            tally[key] = tally.get(key, 0) + 1
        for (source, outcome), n in tally.items():
            self._count(source, outcome, n)

    # -- the script ----------------------------------------------------------------------
    async def record(self, events: list[Event]) -> list[Answer]:
        """Run the batch script; raises a Redis error (or TimeoutError) when Redis fails."""
        keys = self._script_keys
        now = time.time()
        received_at = now_iso(now)  # the batch's time, for the events that have none
        for event in events:
            if not event.meta[RECEIVED]:
                event.meta[RECEIVED] = received_at
        args: list[Any] = [
            self.events_maxlen,
            self.delivery_ttl_s,
            self.fold_ttl_s,
            self.own_user_id,
            len(events),
            encode_metas([event.meta for event in events]),
            int(now * 1000),  # the messages' timestamp
            *[event.body for event in events],
        ]
        head: list[Any] = [self._sha, len(keys)]
        size = sum(map(len, args[7:]))
        async with Deadline(self.timeout_s + size / MIN_BYTES_PER_S, self._loop):
            try:
                results = await self._line.call(("EVALSHA", *head, *keys, *args))
            except redis.exceptions.NoScriptError:  # first call on this server: EVAL caches it
                results = await self._line.call(("EVAL", RECORD_BATCH, len(keys), *keys, *args))
        replies = str(results).split(";")
        try:
            return [answer_of(event, reply) for event, reply in zip(events, replies, strict=True)]
        except Exception:  # the batch is stored: one bad answer must not fail the others
            log.exception("ingest: answers of a stored batch could not all be made")
            pairs = zip(events, replies, strict=True)
            return [self._answer(event, reply) for event, reply in pairs]

    @staticmethod
    def _answer(event: Event, reply: str) -> Answer:
        try:
            return answer_of(event, reply)
        except Exception:
            return stored_answer(reply.split("|")[1])

    async def record_entries(self, entries: list[Entry]) -> list[Answer]:
        """`record` for Entry dicts (spool records, of any version)."""
        return await self.record([self._make.from_entry(entry) for entry in entries])

    # -- the spool -----------------------------------------------------------------------
    async def drain(self) -> int:
        """Move spooled events into Redis, oldest file first; returns how many were stored.

        Stops at the first Redis failure (the file stays for the next pass). Re-sending
        an event that reached Redis before is harmless: its marker makes it a duplicate.
        """
        moved = 0
        loop = asyncio.get_running_loop()
        while True:
            async with self._order:
                claim = await loop.run_in_executor(self._disk, self.spool.claim)
                if claim is None:
                    self.spool.mark_drained()
                    return moved
            try:
                events = [self._make.from_entry(entry) for entry in claim.entries]
                while events:
                    n = fit(events[: self.max_batch], self.max_batch_bytes)
                    chunk, events = events[:n], events[n:]
                    answers = await self.record(chunk)
                    self._tally(
                        chunk, ["drained" if a.status == 202 else "duplicate" for a in answers]
                    )
                    moved += len(chunk)
            except REDIS_ERRORS as exc:
                await loop.run_in_executor(self._disk, claim.release)
                log.info("spool: drain paused (%s: %s)", type(exc).__name__, exc)
                return moved
            await loop.run_in_executor(self._disk, claim.finish)

    async def drain_forever(self, interval_s: float) -> None:
        while True:
            try:
                if self.spool.has_backlog:
                    started = time.monotonic()
                    moved = await self.drain()
                    if moved:
                        log.info(
                            "spool: %d event(s) moved into Redis in %.2fs",
                            moved,
                            time.monotonic() - started,
                        )
            except Exception:
                log.exception("spool drain failed; will retry")
            await asyncio.sleep(interval_s)

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._line.close()
        self._disk.shutdown(wait=True)
