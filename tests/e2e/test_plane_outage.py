"""Plane unreachable for 30 s in the middle of several pipelines, with the CLI processes.

`planeflow web`, `worker` and `scheduler` run as users run them, against the sandbox
Plane over HTTP through a proxy that refuses connections (or hangs) for 30 s while
three work items travel their pipelines. Afterwards every item is Done in Plane, has
each of its milestone comments exactly once, and its Plane state history never went
backwards.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from app.sandbox.plane_runner import HUMAN_KEY, SandboxPlaneRunner, make_sandbox, seed_demo
from app.store import Store
from tests.conftest import RedisServer, free_port
from tests.e2e.conftest import Processes, cli_env, wait_for, web_up
from tests.e2e.stack import FULL_JOURNEY
from tests.helpers import SECRET, make_remote, pipeline_project, write_registry
from tests.proxy import Proxy

pytestmark = pytest.mark.redis_server
OUTAGE_S = 30.0
ITEMS = 3


@pytest.fixture
def plane() -> Iterator[SandboxPlaneRunner]:
    sandbox = make_sandbox(rate_limit=None, webhook_retries=3, webhook_backoff_s=0.2)
    for n in range(ITEMS):
        seed_demo(sandbox.world, items=1, project_id=str(uuid.UUID(int=n + 1)))
    runner = SandboxPlaneRunner(sandbox).start()
    yield runner
    runner.stop()


@pytest.mark.parametrize("outage", ["refuse", "hang"])
def test_plane_outage_loses_no_comment_and_no_status(
    outage: str,
    tmp_path: Path,
    redis_server: RedisServer,
    real_redis: redis.Redis,
    plane: SandboxPlaneRunner,
) -> None:
    world = plane.sandbox.world
    projects = list(world.projects.values())
    registry = {}
    for n, project in enumerate(projects):
        remote = make_remote(tmp_path / f"repo{n}")
        entry = pipeline_project(remote, plane.base_url + "/_sandbox/info")
        entry.update(plane_project_id=project.id, work_item_prefix=f"P{n}")
        registry[f"p{n}"] = entry
    proxy = Proxy(plane.port, free_port()).start()
    web_port = free_port()
    env = cli_env(
        tmp_path,
        redis_server.url,
        proxy.url,
        write_registry(tmp_path / "projects.toml", registry),
        ORCH_PLANE_TIMEOUT_S="2",
        ORCH_RECONCILE_INTERVAL_S="10",
        ORCH_SCHEDULER_TICK_S="2",
    )
    procs = Processes(env, tmp_path)
    plane.sandbox.sender.configure(f"http://127.0.0.1:{web_port}/webhooks/plane", SECRET)
    store = Store(real_redis)
    try:
        procs.start("web", "web", "--port", str(web_port))
        procs.start("worker", "worker", "--threads", "6")
        procs.start("scheduler", "scheduler")
        wait_for(lambda: web_up(web_port), 30, "web up")
        items = [next(iter(p.items.values())) for p in projects]
        for n, (project, item) in enumerate(zip(projects, items, strict=True)):
            # developers that finish 5, 13 and 21 s into the outage: milestones in flight
            item.description_html = f"<p>[agent:slow-development={5 + 8 * n}]</p>"
            world.move(project.id, item.id, "To Analyse", HUMAN_KEY)
        wait_for(lambda: len(store.list_tasks()) == ITEMS, 30, "tasks created")
        time.sleep(0.5)  # the pipelines are under way
        getattr(proxy, outage)()
        time.sleep(OUTAGE_S)
        # Meanwhile the agents ran: no job held its slot waiting for Plane.
        during = {t.work_item_id: t.stage.value for t in store.list_tasks()}
        proxy.pass_()
        assert set(during.values()) == {"review"}, during
        _approve_and_finish(store, plane, projects, items)
    finally:
        plane.sandbox.sender.configure(None)
        procs.stop()
        proxy.stop()
    for project, item in zip(projects, items, strict=True):
        task = store.get_task_by_issue(item.id)
        history = world.state_history(item.id)
        assert history[-1] == "Done", history
        order = [FULL_JOURNEY.index(s) for s in history if s in FULL_JOURNEY]
        timeline = [f"{e['kind']}: {e['message'][:90]}" for e in store.timeline(task.id)]
        assert order == sorted(order), f"backwards: {history}; timeline: {timeline}"
        with plane.sandbox.lock:
            ids = [c.external_id for c in project.comments.get(item.id, [])]
        queued = int(real_redis.get(f"pf:outbox:{task.id}:seq") or 0)
        assert queued == 2  # the review digest and the closing one
        assert ids == [f"planeflow-{task.id}-{n}" for n in range(1, queued + 1)]
    counts = {int(real_redis.get(f"pf:outbox:{t.id}:seq") or 0) for t in store.list_tasks()}
    assert len(counts) == 1  # every item has the same milestones as the others
    hit = [
        t.work_item_id
        for t in store.list_tasks()
        if any("Plane did not take the writes" in e["message"] for e in store.timeline(t.id))
    ]
    assert hit, "the outage should have caught writes in flight"


def _approve_and_finish(
    store: Store, plane: SandboxPlaneRunner, projects: list[Any], items: list[Any]
) -> None:
    """A human approves each item once Plane shows it in Code Review; all reach done."""
    approved: set[str] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = 0
        for project, item in zip(projects, items, strict=True):
            task = store.get_task_by_issue(item.id)
            state = plane.sandbox.world.state_history(item.id)[-1]
            if task.stage.value == "done" and state == "Done":
                done += 1
            elif state == "Code Review" and item.id not in approved:
                if store.active_job(task) is None and task.stage.value == "review":
                    plane.sandbox.world.move(project.id, item.id, "Approved", HUMAN_KEY)
                    approved.add(item.id)
            elif task.stage.value == "blocked":
                raise AssertionError(f"{task.work_item_id} blocked: {task.blocked_reason}")
        if done == len(items):
            return
        time.sleep(0.3)
    stages = {store.get_task_by_issue(i.id).stage.value for i in items}
    raise AssertionError(f"not all done: {stages}")
