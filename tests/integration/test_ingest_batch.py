"""One script call stores a mixed batch exactly as one call per event would, on a real Redis.

The script gathers its queue writes, last-webhook times and own-user answers per batch;
this checks that events inside one batch still see each other: a second state delivery
folds into the first, a repeated body is a duplicate, our own echo neither absorbs a
human's delivery nor leaves a snapshot, and the queue holds the stored events in order.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from app.ingest import Ingest, connect_async, fit
from app.ingest_event import PROCESS, STREAM_FIELDS, EventMaker, entry_of
from app.keys import Keys
from app.queue import (
    EVENTS_QUEUE,
    PROCESS_EVENT,
    PROCESS_FORGE_EVENT,
    join_message,
    message_args,
    message_head,
    queue_keys,
)
from app.spool import Spool

pytestmark = pytest.mark.redis_server

KEYS = Keys("pf:")
ISSUE_A = "00000000-0000-0000-0000-00000000000a"
ISSUE_B = "00000000-0000-0000-0000-00000000000b"
BOT = "bot-user"


def plane(
    n: int,
    issue: str,
    *,
    actor: str = "human",
    updated: str = "",
    project: str = "demo",
    outcome: str = PROCESS,
) -> dict[str, Any]:
    return {
        "source": "plane",
        "event": "issue",
        "action": "updated",
        "field": "state",
        "project": project,
        "issue": issue,
        "actor": actor,
        "delivery": f"d{n}",
        "digest": f"{n:064x}",
        "received_at": f"2026-11-25T00:00:0{n}+00:00",
        "outcome": outcome,
        "updated": updated,
        "body": json.dumps({"n": n}),
        "queue": EVENTS_QUEUE,
        "actor_name": PROCESS_EVENT,
        "payload": {"issue_id": issue, "actor_id": actor},
        "fold": outcome == PROCESS,
    }


def gitea(n: int) -> dict[str, Any]:
    return {
        "source": "gitea",
        "event": "pull_request",
        "action": "opened",
        "project": "demo",
        "delivery": f"g{n}",
        "digest": f"{n:064x}",
        "received_at": f"2026-11-25T00:00:0{n}+00:00",
        "outcome": PROCESS,
        "body": json.dumps({"g": n}),
        "queue": EVENTS_QUEUE,
        "actor_name": PROCESS_FORGE_EVENT,
        "payload": {"project": "demo", "branches": ["feature/x"]},
    }


async def test_one_batch_sees_its_own_earlier_events(
    redis_server: Any, real_redis: Any, tmp_path: Path
) -> None:
    real_redis.sadd(KEYS.plane_users, BOT)
    batch = [
        plane(1, ISSUE_A, updated="100.0"),  # stored and queued
        plane(2, ISSUE_A, updated="101.0"),  # folds into 1; its snapshot is newer
        plane(1, ISSUE_A, updated="100.0"),  # the same body again: a duplicate
        plane(4, ISSUE_B, actor=BOT, updated="200.0"),  # our echo: queued, no snapshot
        gitea(5),  # another actor, the same queue
        plane(6, ISSUE_B, project="other", outcome="ignored: issue/updated/x"),
        plane(7, ISSUE_B, updated="50.0"),  # a human's never folds into our echo
    ]
    client = connect_async(redis_server.url)
    ingest = Ingest(client, KEYS, Spool(tmp_path), own_user_id="someone-else")
    answers = await ingest.record_entries(batch)
    await ingest.close()
    await client.aclose()

    ids = [a.json().get("event_id") for a in answers]
    assert [a.status for a in answers] == [202, 202, 200, 202, 202, 202, 202]
    assert answers[1].json()["outcome"] == "folded" and answers[1].json()["folded_into"] == ids[0]
    assert answers[2].json() == {"duplicate": True, "event_id": ids[0]}
    assert answers[6].json()["outcome"] == PROCESS

    events = real_redis.xrange(KEYS.events)
    assert [e[0] for e in events] == [ids[0], ids[1], ids[3], ids[4], ids[5], ids[6]]
    assert list(events[0][1]) == [*STREAM_FIELDS, "body"]  # every field, the body last
    assert events[1][1]["outcome"] == f"folded: {ids[0]}"
    assert events[4][1]["outcome"] == "ignored: issue/updated/x"

    queue, messages = queue_keys(EVENTS_QUEUE)
    queued = [ids[0], ids[3], ids[4], ids[6]]
    assert real_redis.lrange(queue, 0, -1) == queued  # in arrival order
    for event_id, entry in zip(queued, [batch[0], batch[3], batch[4], batch[6]], strict=True):
        text = real_redis.hget(messages, event_id)
        message = json.loads(text)
        assert message["message_id"] == event_id == message["args"][0]["event_id"]
        # byte for byte what `queue.join_message` writes (Dramatiq's own encoding)
        head = message_head(EVENTS_QUEUE, entry["actor_name"])
        args = message_args(entry["payload"])
        assert text == join_message(head, args, event_id, message["message_timestamp"])
    assert json.loads(real_redis.hget(messages, ids[4]))["actor_name"] == PROCESS_FORGE_EVENT

    assert real_redis.get(KEYS.fold(ISSUE_A)) == f"{ids[0]}|0"
    assert real_redis.get(KEYS.fold(ISSUE_B)) == f"{ids[6]}|0"
    assert real_redis.get(KEYS.snapshot(ISSUE_A)) == f"101.0|{ids[1]}"
    assert real_redis.get(KEYS.snapshot(ISSUE_B)) == f"50.0|{ids[6]}"  # the echo's: never
    assert real_redis.get(KEYS.delivery(f"{1:064x}")) == ids[0]
    # one time per project, the last one seen; a Gitea event records none
    assert real_redis.hgetall(KEYS.webhooks_last) == {
        "demo": "2026-11-25T00:00:07+00:00",
        "other": "2026-11-25T00:00:06+00:00",
    }


async def test_text_that_is_not_utf8_is_replaced_not_failing_its_batch(
    redis_server: Any, real_redis: Any, tmp_path: Path
) -> None:
    """A header's undecodable bytes (aiohttp keeps them as surrogates) or a lone
    surrogate escape in a signed body must not fail the batch it shares with others."""
    odd = plane(1, ISSUE_A)
    odd["delivery"] = "d\udcff1"
    odd["field"] = "st\ud800ate"
    odd["outcome"] = "ignored: issue/updated/st\ud800ate"  # its answer carries it too
    batch = [odd, plane(2, ISSUE_B)]
    client = connect_async(redis_server.url)
    ingest = Ingest(client, KEYS, Spool(tmp_path))
    answers = await ingest.record_entries(batch)
    await ingest.close()
    await client.aclose()

    assert [a.status for a in answers] == [202, 202]
    assert answers[0].json()["outcome"] == "ignored: issue/updated/st?ate"
    first, second = (fields for _, fields in real_redis.xrange(KEYS.events))
    assert first["delivery"] == "d?1" and first["field"] == "st?ate"
    assert second["delivery"] == "d2"


async def test_a_spool_record_of_an_older_version_is_stored_under_its_sha256(
    redis_server: Any, real_redis: Any, tmp_path: Path
) -> None:
    """Spooled before the signature became the fingerprint: `sha256`, no `digest`, no
    `spooled` or `updated` field, the body as text."""
    old = plane(1, ISSUE_A)
    old["sha256"] = old.pop("digest")
    del old["updated"]  # (the test entries carry no `spooled`)
    old["body"] = '{"é": 1}'
    client = connect_async(redis_server.url)
    ingest = Ingest(client, KEYS, Spool(tmp_path))
    first, again = await ingest.record_entries([old]), await ingest.record_entries([dict(old)])
    await ingest.close()
    await client.aclose()
    assert first[0].status == 202 and again[0].status == 200
    assert real_redis.get(KEYS.delivery(f"{1:064x}")) == first[0].json()["event_id"]
    ((_, fields),) = real_redis.xrange(KEYS.events)
    assert fields["digest"] == f"{1:064x}" and fields["body"] == '{"é": 1}'
    assert fields["spooled"] == "" and fields["updated"] == ""


async def test_entries_without_a_time_get_their_batch_time(
    redis_server: Any, real_redis: Any, tmp_path: Path
) -> None:
    fresh = [plane(1, ISSUE_A), plane(2, ISSUE_B)]
    for entry in fresh:
        entry["received_at"] = ""
        entry["body"] = entry["body"].encode()  # the receiver keeps the bytes
    client = connect_async(redis_server.url)
    ingest = Ingest(client, KEYS, Spool(tmp_path))
    await ingest.record_entries(fresh)
    await ingest.close()
    await client.aclose()
    times = [f["received_at"] for _, f in real_redis.xrange(KEYS.events)]
    assert times[0] == times[1] and times[0].endswith("+00:00")
    assert real_redis.hget(KEYS.webhooks_last, "demo") == times[0]


def big(n: int, size: int) -> dict[str, Any]:
    entry = plane(n, f"00000000-0000-0000-0000-{n:012x}")
    entry["body"] = json.dumps({"n": n, "pad": "x" * size}).encode()
    return entry


def script_calls(real_redis: Any) -> int:
    stats = real_redis.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


async def test_a_burst_of_big_bodies_goes_in_batches_redis_can_answer_in_time(
    redis_server: Any, real_redis: Any, tmp_path: Path
) -> None:
    """128 webhooks of 1 MB at once: one 128 MB script call outlived the batch deadline
    and spooled them all ("redis unavailable"), and the drain, re-sending them in the same
    batch, never got them out. Batches are bounded by bytes (4 MB) as well as by count."""
    client = connect_async(redis_server.url)
    spool = Spool(tmp_path)
    ingest = Ingest(client, KEYS, spool)
    events = [ingest._make.from_entry(big(n, 1_000_000)) for n in range(128)]
    calls = script_calls(real_redis)
    answers = await asyncio.gather(*[ingest.accept(event) for event in events])
    await ingest.close()
    await client.aclose()
    assert {a.outcome for a in answers} == {PROCESS}  # stored in Redis, none spooled
    assert not spool.has_backlog
    assert real_redis.xlen(KEYS.events) == 128
    assert script_calls(real_redis) - calls >= 128 // 4  # at most four 1 MB bodies a call


async def test_a_spool_of_big_bodies_drains_in_batches_of_bounded_bytes(
    redis_server: Any, real_redis: Any, tmp_path: Path
) -> None:
    client = connect_async(redis_server.url)
    spool = Spool(tmp_path)
    ingest = Ingest(client, KEYS, spool)
    events = [ingest._make.from_entry(big(n, 1_000_000)) for n in range(128)]
    spool.append([entry_of(event) for event in events])
    moved = await ingest.drain()
    await ingest.close()
    await client.aclose()
    assert moved == 128 and not spool.has_backlog
    assert real_redis.xlen(KEYS.events) == 128


def test_a_batch_is_bounded_by_bytes_and_never_splits_a_body() -> None:
    make = EventMaker(KEYS)
    sized = [make.from_entry(big(n, size)) for n, size in enumerate([10, 10, 500, 10])]
    overhead = len(sized[0].body) - 10
    assert fit(sized, 2 * (10 + overhead)) == 2
    assert fit(sized, 2 * (10 + overhead) - 1) == 1
    assert fit(sized[2:], 1) == 1  # one body bigger than the bound goes alone
    assert fit(sized, 10**6) == 4 and fit([], 1) == 0


async def test_an_answer_that_cannot_be_made_does_not_fail_the_rest_of_its_batch(
    redis_server: Any, real_redis: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch is stored and queued before its answers are made: a bug in one answer
    (here made to raise) must not answer its batch 503, nor lose its event's id."""
    import app.ingest

    real = app.ingest.answer_of

    def answer_of(event: Any, reply: str) -> Any:
        if event.meta == bad_meta:
            raise ValueError("a bug")
        return real(event, reply)

    monkeypatch.setattr(app.ingest, "answer_of", answer_of)
    client = connect_async(redis_server.url)
    ingest = Ingest(client, KEYS, Spool(tmp_path))
    events = [ingest._make.from_entry(plane(n, ISSUE_A if n == 1 else ISSUE_B)) for n in (1, 2)]
    bad_meta = events[0].meta
    answers = await ingest.record(events)
    await ingest.close()
    await client.aclose()
    stored = [event_id for event_id, _ in real_redis.xrange(KEYS.events)]
    assert answers[0].status == 202 and answers[0].json()["event_id"] == stored[0]
    assert answers[1].json()["outcome"] == PROCESS and answers[1].json()["event_id"] == stored[1]
