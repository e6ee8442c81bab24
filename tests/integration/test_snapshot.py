"""A fresh human webhook's snapshot serves as the work item's state: no Plane read.

Deliveries go through the receiver's real path (intake, then the ingest script into
fake Redis); the worker's `process` then routes on the newest human snapshot by
`data.updated_at` (ties to the later arrival). Echoes never replace it; an old
snapshot and a replay read Plane.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import fakeredis
from multidict import CIMultiDict

from app.domain.results import Handled
from app.domain.stages import Stage
from app.events import replay
from app.ingest import Ingest
from app.intake import PlaneIntake
from app.plane.webhooks import signature
from app.sandbox.plane_runner import SandboxPlaneRunner
from app.sandbox.plane_world import Item
from app.services import Services
from app.spool import Spool
from tests.helpers import SECRET, demo_project, first_item, move, plane_delivery


def item_reads(runner: SandboxPlaneRunner, item: Item) -> int:
    return sum(
        1
        for method, path in runner.sandbox.request_log
        if method == "GET" and path.rstrip("/").endswith(item.id)
    )


def deliver(
    services: Services,
    fake_server: fakeredis.FakeServer,
    runner: SandboxPlaneRunner,
    item: Item,
    *,
    actor: str = "human",
    updated_at: str | None = None,
    nonce: str = "",
) -> dict[str, Any]:
    """The item's current webhook, through intake and the ingest script; its payload."""
    raw, _ = plane_delivery(runner, demo_project(runner), item, actor_id=actor, nonce=nonce)
    body = json.loads(raw)
    if updated_at is not None:
        body["data"]["updated_at"] = updated_at
    raw = json.dumps(body).encode()
    headers = CIMultiDict({"X-Plane-Signature": signature(SECRET, raw)})
    event = PlaneIntake(services.registry, SECRET, services.settings.keys).event(raw, headers)

    async def record() -> str:
        client = fakeredis.aioredis.FakeRedis(server=fake_server, decode_responses=True)
        ingest = Ingest(
            client, services.settings.keys, Spool(services.settings.spool_dir), own_user_id=None
        )
        answer = (await ingest.record([event]))[0]
        await client.aclose()
        return str(answer.json()["event_id"])

    return {**(event.payload or {}), "event_id": asyncio.run(record())}


def test_fresh_human_webhook_is_used_without_a_plane_read(
    services: Services, fake_server: fakeredis.FakeServer, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = first_item(sandbox_plane)
    move(sandbox_plane, item, "To Analyse")
    payload = deliver(services, fake_server, sandbox_plane, item)
    before = item_reads(sandbox_plane, item)
    result = services.events.process(payload)
    assert result.kind is Handled.STARTED and result.stage is Stage.ANALYSIS
    assert item_reads(sandbox_plane, item) == before  # the snapshot was the state
    task = services.store.get_task_by_issue(item.id)
    assert task is not None and task.description  # and the text
    assert services.store.counters().get("plane_reads_saved") == 1


def test_newest_snapshot_by_updated_at_wins_ties_to_the_later_arrival(
    services: Services, fake_server: fakeredis.FakeServer, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = first_item(sandbox_plane)
    move(sandbox_plane, item, "To Analyse")
    newer = deliver(
        services, fake_server, sandbox_plane, item, updated_at="2026-11-25T10:00:02Z", nonce="a"
    )
    move(sandbox_plane, item, "Backlog")
    # an older edit delivered late does not replace the newer snapshot
    deliver(
        services, fake_server, sandbox_plane, item, updated_at="2026-11-25T10:00:01Z", nonce="b"
    )
    assert services.events.process(newer).kind is Handled.STARTED  # To Analyse stood
    item2 = list(demo_project(sandbox_plane).items.values())[1]
    move(sandbox_plane, item2, "To Analyse")
    first = deliver(
        services, fake_server, sandbox_plane, item2, updated_at="2026-11-25T10:00:05Z", nonce="c"
    )
    move(sandbox_plane, item2, "Backlog")
    deliver(
        services, fake_server, sandbox_plane, item2, updated_at="2026-11-25T10:00:05Z", nonce="d"
    )
    result = services.events.process(first)  # the same updated_at: the later one counts
    assert result.kind is Handled.IGNORED and "not a trigger" in result.detail


def test_echo_never_replaces_the_human_snapshot(
    services: Services, fake_server: fakeredis.FakeServer, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = first_item(sandbox_plane)
    move(sandbox_plane, item, "To Analyse")
    human = deliver(services, fake_server, sandbox_plane, item, updated_at="2026-11-25T10:00:00Z")
    move(sandbox_plane, item, "Backlog")
    bot = services.pipeline.own_user_id
    assert bot
    deliver(
        services,
        fake_server,
        sandbox_plane,
        item,
        actor=bot,
        updated_at="2026-11-25T10:00:09Z",
        nonce="echo",
    )
    assert services.events.process(human).kind is Handled.STARTED


def test_old_snapshot_and_replay_read_plane(
    make_services: Any, fake_server: fakeredis.FakeServer, sandbox_plane: SandboxPlaneRunner
) -> None:
    services = make_services()
    services.events.clock = lambda: time.time() + 3600  # the snapshot is an hour old
    item = first_item(sandbox_plane)
    move(sandbox_plane, item, "To Analyse")
    payload = deliver(services, fake_server, sandbox_plane, item)
    move(sandbox_plane, item, "Backlog")  # Plane has moved on since
    before = item_reads(sandbox_plane, item)
    result = services.events.process(payload)
    assert result.kind is Handled.IGNORED and "not a trigger" in result.detail
    assert item_reads(sandbox_plane, item) == before + 1
    services.events.clock = time.time
    replayed = replay(services.store, services.registry, services.events, since="-")
    assert [r.kind for _, r in replayed] == [Handled.IGNORED]
    assert item_reads(sandbox_plane, item) == before + 2  # the replay read Plane too
