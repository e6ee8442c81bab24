"""Redis down or hung: webhooks are acknowledged from the spool, then all processed once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient

from actors.worker import start_worker
from app.plane.webhooks import signature
from app.sandbox.plane_runner import SandboxPlaneRunner
from app.services import Services
from app.store import connect
from app.web import RECEIVER, create_app
from tests.conftest import RedisServer, free_port
from tests.e2e.conftest import wait_for
from tests.helpers import (
    FIXTURE_SECRET,
    demo_project,
    fixture_delivery,
    plane_delivery,
    registry,
    settings,
)

Client = TestClient[Any, Any]


async def test_hundred_webhooks_while_redis_is_down_are_processed_once(
    aiohttp_client: Any, tmp_path: Path, sandbox_plane: SandboxPlaneRunner
) -> None:
    server = RedisServer(free_port(), tmp_path)
    server.start()
    cfg = settings(
        tmp_path, redis_url=server.url, plane_url=sandbox_plane.base_url, plane_rate_per_min=100_000
    )
    client_r = connect(server.url)
    app = create_app(cfg, registry=registry(), redis_client=client_r, drain_interval_s=0.2)
    client: Client = await aiohttp_client(app)

    project = demo_project(sandbox_plane)
    world = sandbox_plane.sandbox.world
    with sandbox_plane.sandbox.lock:
        human = world.user_for_key(sandbox_plane.sandbox.human_key or "")
        items = [
            world.create_item(
                project,
                {"name": f"spooled {n}", "state": project.state_by_name("To Analyse").id},
                human,
            )
            for n in range(100)
        ]
    deliveries = [plane_delivery(sandbox_plane, project, item) for item in items]

    server.stop()
    try:
        for body, headers in deliveries:  # in order, like one Plane worker
            resp = await client.post("/webhooks/plane", data=body, headers=headers)
            assert resp.status == 202
            assert (await resp.json())["spooled"] is True
        assert (await client.get("/readyz")).status == 503
    finally:
        server.start()

    def stored() -> bool:
        return bool(client_r.xlen(cfg.keys.events) == 100)

    await asyncio.to_thread(wait_for, stored, 30, "spool drained")
    events = client_r.xrange(cfg.keys.events)
    assert [e[1]["issue"] for e in events] == [item.id for item in items]  # in order
    assert not list((tmp_path / "spool").glob("spool-*"))  # drained files are removed

    services = Services(cfg, registry_override=registry())
    worker, services = start_worker(
        cfg, threads=8, services=services, client=redis.Redis.from_url(server.url)
    )
    try:
        store = services.store
        await asyncio.to_thread(wait_for, lambda: len(store.list_tasks()) == 100, 60, "100 tasks")
        tasks = store.list_tasks()
        assert sorted(t.plane_issue_id for t in tasks) == sorted(i.id for i in items)
        created = [e for t in tasks for e in store.timeline(t.id) if e["kind"] == "created"]
        assert len(created) == 100  # each processed once
        # a redelivery of the same bytes later is a duplicate, not a second event
        body, headers = deliveries[0]
        again = await client.post("/webhooks/plane", data=body, headers=headers)
        assert again.status == 200
    finally:
        worker.stop(timeout=10_000)
        worker.broker.close()
        services.close()
        server.stop()


@dataclass
class Hangable:
    """The receiver on a real Redis of its own that a test may SIGSTOP."""

    server: RedisServer
    cfg: Any
    redis: Any  # the synchronous client the app was given
    app: web.Application
    client: Client

    def hang(self) -> None:
        assert self.server._proc is not None
        os.kill(self.server._proc.pid, signal.SIGSTOP)  # accepts, never answers

    def resume(self) -> None:
        assert self.server._proc is not None
        os.kill(self.server._proc.pid, signal.SIGCONT)


@pytest.fixture
async def hangable(aiohttp_client: Any, tmp_path: Path) -> AsyncIterator[Hangable]:
    server = RedisServer(free_port(), tmp_path)
    server.start()
    cfg = settings(tmp_path, redis_url=server.url)
    client_r = connect(server.url)
    app = create_app(cfg, registry=registry(), redis_client=client_r, drain_interval_s=0.2)
    world = Hangable(server, cfg, client_r, app, await aiohttp_client(app))
    try:
        yield world
    finally:
        world.resume()
        client_r.close()
        server.stop()


async def test_hung_redis_sends_webhooks_to_the_spool_quickly(hangable: Hangable) -> None:
    client, cfg = hangable.client, hangable.cfg
    body, headers = fixture_delivery("webhook_issue_updated_state")
    assert (await client.get("/readyz")).status == 200  # connected before the hang
    hangable.hang()
    started = time.monotonic()
    resp = await client.post("/webhooks/plane", data=body, headers=headers)
    waited = time.monotonic() - started
    assert resp.status == 202 and (await resp.json())["spooled"] is True
    # Plane's sender gives up after a few seconds; the spool answers well before
    assert waited < 3, f"answered after {waited:.1f}s"
    hangable.resume()

    def stored() -> bool:
        return bool(hangable.redis.xlen(cfg.keys.events) == 1)

    await asyncio.to_thread(wait_for, stored, 15, "spool drained after the hang")


def variant(n: int) -> tuple[bytes, dict[str, str]]:
    """The recorded delivery with another webhook id: a distinct body, signed the same way."""
    body, headers = fixture_delivery("webhook_issue_updated_state")
    raw = json.loads(body)
    raw["webhook_id"] = f"variant-{n}"
    new = json.dumps(raw).encode()
    return new, {**headers, "X-Plane-Signature": signature(FIXTURE_SECRET, new)}


async def test_redis_hung_mid_batch_spools_in_time_and_the_next_batch_reconnects(
    hangable: Hangable,
) -> None:
    # The ingest connection has no socket timeout of its own: the batch's deadline
    # (twice ORCH_INGEST_REDIS_TIMEOUT_S) must still end a command Redis never answers.
    client, cfg, client_r = hangable.client, hangable.cfg, hangable.redis
    first = await client.post("/webhooks/plane", data=variant(1)[0], headers=variant(1)[1])
    assert first.status == 202 and "spooled" not in await first.json()  # connected
    hangable.hang()
    started = time.monotonic()
    body, headers = variant(2)
    resp = await client.post("/webhooks/plane", data=body, headers=headers)
    waited = time.monotonic() - started
    assert resp.status == 202 and (await resp.json())["spooled"] is True
    assert 0.5 < waited < 3, f"answered after {waited:.1f}s"
    hangable.resume()
    await asyncio.to_thread(wait_for, lambda: client_r.xlen(cfg.keys.events) == 2, 15, "drained")
    await asyncio.to_thread(
        wait_for, lambda: not list(cfg.spool_dir.glob("spool-*")), 15, "files gone"
    )
    third = await client.post("/webhooks/plane", data=variant(3)[0], headers=variant(3)[1])
    answer = await third.json()
    assert third.status == 202 and "spooled" not in answer, answer  # a new connection
    assert client_r.xlen(cfg.keys.events) == 3


async def test_metrics_scrapes_during_a_hung_redis_never_hold_a_webhook(
    hangable: Hangable,
) -> None:
    """Scrapes read Redis with the synchronous client (10 s timeouts, retries) in threads;
    the spool's writes shared the same thread pool, so six scrapes abandoned by their
    scraper left webhooks unanswered for 20 s and more. Now the spool has its own thread,
    scrapes share one Redis read, and a scrape answers without it when it is late."""
    client, cfg, client_r = hangable.client, hangable.cfg, hangable.redis
    hangable.app[RECEIVER].shared.wait_s = 0.5
    first = await client.post("/webhooks/plane", data=variant(1)[0], headers=variant(1)[1])
    assert first.status == 202 and "spooled" not in await first.json()
    hangable.hang()

    async def abandoned_scrape() -> None:
        try:
            async with asyncio.timeout(0.2):
                await client.get("/metrics")
        except TimeoutError:
            pass

    await asyncio.gather(*[abandoned_scrape() for _ in range(12)])
    started = time.monotonic()
    body, headers = variant(2)
    resp = await client.post("/webhooks/plane", data=body, headers=headers)
    waited = time.monotonic() - started
    assert resp.status == 202 and (await resp.json())["spooled"] is True
    assert waited < 3, f"answered after {waited:.1f}s"

    started = time.monotonic()
    scrape = await client.get("/metrics")
    text = await scrape.text()
    assert scrape.status == 200 and time.monotonic() - started < 3
    assert "planeflow_metrics_redis_up 0.0" in text
    assert 'planeflow_webhooks_total{outcome="spooled",source="plane"} 1.0' in text
    assert "planeflow_tasks" not in text  # the Redis-backed part, left out

    hangable.resume()
    await asyncio.to_thread(wait_for, lambda: client_r.xlen(cfg.keys.events) == 2, 15, "drained")
    for _ in range(100):  # the late scrape ends, the next one reads Redis again
        text = await (await client.get("/metrics")).text()
        if "planeflow_metrics_redis_up 1.0" in text:
            break
        await asyncio.sleep(0.2)
    assert "planeflow_metrics_redis_up 1.0" in text and "planeflow_tasks{" in text
