"""Signed webhooks through the receiver, processed by a real worker on a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

from app.sandbox.plane_runner import SandboxPlaneRunner
from app.services import Services
from app.web import create_app
from tests.e2e.conftest import wait_for
from tests.helpers import demo_project, first_item, move, plane_delivery, registry

Client = TestClient[Any, Any]


def first_jobs(services: Services, task_id: str) -> int:
    """Jobs queued for the first stage (the worker runs them; later stages do not count)."""
    return sum(
        1
        for e in services.store.timeline(task_id)
        if e["kind"] == "job" and e["message"].endswith("queued for analysis")
    )


async def receiver(aiohttp_client: Any, services: Services) -> Client:
    app = create_app(
        services.settings,
        registry=registry(),
        redis_client=services.store.r,
    )
    client: Client = await aiohttp_client(app)
    return client


async def test_start_webhook_creates_one_task_and_its_first_job(
    aiohttp_client: Any, worker: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    client = await receiver(aiohttp_client, worker)
    item = first_item(sandbox_plane)
    move(sandbox_plane, item, "To Analyse")
    body, headers = plane_delivery(sandbox_plane, demo_project(sandbox_plane), item)
    assert (await client.post("/webhooks/plane", data=body, headers=headers)).status == 202
    task = await asyncio.to_thread(
        wait_for, lambda: worker.store.get_task_by_issue(item.id), 20, "task"
    )
    assert worker.store.timeline(task.id)[0]["message"] == "task created in stage analysis"
    await asyncio.to_thread(
        wait_for, lambda: first_jobs(worker, task.id) == 1, 10, "first job enqueued"
    )
    events = worker.store.r.xrange(worker.store.keys.events)
    assert [e[1]["outcome"] for e in events] == ["process"]


async def test_fifty_concurrent_start_webhooks_make_one_task_one_job(
    aiohttp_client: Any, worker: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    client = await receiver(aiohttp_client, worker)
    item = first_item(sandbox_plane)
    move(sandbox_plane, item, "To Analyse")
    project = demo_project(sandbox_plane)
    identical = [plane_delivery(sandbox_plane, project, item) for _ in range(50)]
    distinct = [plane_delivery(sandbox_plane, project, item, nonce=str(n)) for n in range(50)]
    answers = await asyncio.gather(
        *(client.post("/webhooks/plane", data=b, headers=h) for b, h in identical + distinct)
    )
    statuses = sorted(a.status for a in answers)
    assert statuses.count(200) == 49  # identical bodies: one stored, 49 duplicates
    assert statuses.count(202) == 51  # one identical + 50 distinct, all stored
    bodies = [await a.json() for a in answers if a.status == 202]
    # deliveries that arrive while the item's event is still queued fold into it
    queued = sum(1 for b in bodies if b["outcome"] == "process")
    assert queued + sum(1 for b in bodies if b["outcome"] == "folded") == 51
    assert queued < 51
    tasks = await asyncio.to_thread(wait_for, worker.store.list_tasks, 20, "a task")

    def decisions() -> list[dict[str, str]]:
        # every event decided; the creating one also queues the first job (a write of
        # its own, which the others' decisions can overtake)
        timeline = worker.store.timeline(tasks[0].id)
        ignored = sum(e["message"].startswith("ignored: ") for e in timeline)
        done = ignored >= queued - 1 and first_jobs(worker, tasks[0].id) >= 1
        return timeline if done else []

    timeline = await asyncio.to_thread(wait_for, decisions, 30, f"{queued} decisions")
    assert len(worker.store.list_tasks()) == 1
    assert first_jobs(worker, tasks[0].id) == 1  # exactly one first job
    assert sum(1 for e in timeline if e["kind"] == "created") == 1
    # every other processed event was handled and ignored with its reason (already
    # running, or the current state is now our own "Analysis" status)
    assert sum(1 for e in timeline if e["message"].startswith("ignored: ")) == queued - 1
