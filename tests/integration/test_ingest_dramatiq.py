"""The messages the ingest script writes are Dramatiq's own: a real Worker consumes them."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.middleware import CurrentMessage

from app.ingest import Ingest, connect_async
from app.ingest_event import PROCESS
from app.keys import Keys
from app.queue import EVENTS_QUEUE, PROCESS_EVENT, make_redis_broker, queue_keys
from app.spool import Spool
from tests.conftest import RedisServer

pytestmark = pytest.mark.redis_server


def entry(n: int) -> dict[str, Any]:
    return {
        "source": "plane",
        "event": "issue",
        "action": "updated",
        "field": "state",
        "project": "demo",
        "issue": f"00000000-0000-0000-0000-{n:012d}",
        "actor": "human",
        "delivery": f"d{n}",
        "digest": f"{n:064x}",
        "received_at": "2026-11-25T00:00:00+00:00",
        "outcome": PROCESS,
        "body": '{"text": "@@planeflow-event-id@@ in user text"}',
        "queue": EVENTS_QUEUE,
        "actor_name": PROCESS_EVENT,
        "payload": {"issue_id": f"00000000-0000-0000-0000-{n:012d}", "note": '"quoted" é'},
        "fold": True,
    }


async def test_a_real_worker_runs_ingested_messages_and_acks_them(
    redis_server: RedisServer, real_redis: Any, tmp_path: Path
) -> None:
    broker = make_redis_broker(redis_server.url, middleware=[CurrentMessage()])
    seen: list[tuple[dict[str, Any], str]] = []
    done = threading.Event()

    def process_event(payload: dict[str, Any]) -> None:
        message = CurrentMessage.get_current_message()
        seen.append((payload, message.message_id if message else ""))
        if len(seen) == 5:
            done.set()

    dramatiq.actor(broker=broker, actor_name=PROCESS_EVENT, queue_name=EVENTS_QUEUE)(process_event)
    client = connect_async(redis_server.url)
    ingest = Ingest(client, Keys("pf:"), Spool(tmp_path))
    answers = await ingest.record_entries([entry(n) for n in range(5)])
    await client.aclose()
    assert [a.status for a in answers] == [202] * 5

    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        assert done.wait(15), f"worker ran {len(seen)} of 5"
    finally:
        worker.stop()
        broker.close()
    by_issue = {p["issue_id"]: p for p, _ in seen}
    for n, answer in enumerate(answers):
        payload = by_issue[f"00000000-0000-0000-0000-{n:012d}"]
        assert payload["event_id"] == answer.json()["event_id"]
        assert payload["note"] == '"quoted" é'
    list_key, msgs_key = queue_keys(EVENTS_QUEUE)
    assert real_redis.llen(list_key) == 0
    assert real_redis.hlen(msgs_key) == 0  # acked: Dramatiq deleted every message
