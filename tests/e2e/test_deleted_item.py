"""A work item deleted in Plane during analysis, with the CLI processes over HTTP."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import redis

from app.domain.stages import Stage
from app.sandbox.plane_runner import HUMAN_KEY, SandboxPlaneRunner
from app.store import Store
from tests.conftest import RedisServer, free_port
from tests.e2e.conftest import Processes, cli_env, wait_for, web_up
from tests.helpers import (
    SECRET,
    demo_project,
    first_item,
    make_remote,
    pipeline_project,
    write_registry,
)

pytestmark = pytest.mark.redis_server


def test_item_deleted_during_analysis_cancels_its_task_and_kills_its_agent(
    tmp_path: Path,
    redis_server: RedisServer,
    real_redis: redis.Redis,
    sandbox_plane: SandboxPlaneRunner,
) -> None:
    entry = pipeline_project(make_remote(tmp_path), sandbox_plane.base_url + "/_sandbox/info")
    web_port = free_port()
    # shorter than the defaults (600 s / 60 s / 60 s) so the test takes seconds
    env = cli_env(
        tmp_path,
        redis_server.url,
        sandbox_plane.base_url,
        write_registry(tmp_path / "projects.toml", {"demo": entry}),
        ORCH_RECONCILE_INTERVAL_S="2",
        ORCH_SCHEDULER_TICK_S="1",
        ORCH_ITEM_CHECK_AFTER_S="0",
        ORCH_DELETED_CONFIRM_S="3",
    )
    procs = Processes(env, tmp_path)
    sandbox_plane.sandbox.sender.configure(f"http://127.0.0.1:{web_port}/webhooks/plane", SECRET)
    store = Store(real_redis)
    project = demo_project(sandbox_plane)
    item = first_item(sandbox_plane)
    item.description_html = "<p>[agent:slow-analysis=120]</p>"  # analysis runs for a while
    try:
        procs.start("web", "web", "--port", str(web_port))
        procs.start("worker", "worker", "--threads", "4")
        procs.start("scheduler", "scheduler")
        wait_for(lambda: web_up(web_port), 30, "web up")
        sandbox_plane.sandbox.world.move(project.id, item.id, "To Analyse", HUMAN_KEY)

        def agent_running() -> int | None:
            task = store.get_task_by_issue(item.id)
            job = store.active_job(task) if task else None
            return job.agent_pgid if job is not None and job.agent_pgid else None

        pgid = wait_for(agent_running, 30, "the analyst running")
        with sandbox_plane.sandbox.lock:
            sandbox_plane.sandbox.world.delete_item(project, item)
        deleted_at = time.monotonic()
        task = wait_for(
            lambda: (t := store.get_task_by_issue(item.id)) and t.stage is Stage.CANCELLED and t,
            40,
            "task cancelled",
        )
        assert time.monotonic() - deleted_at >= 3  # two 404s, 3 s apart here
        wait_for(lambda: not _alive(pgid), 15, "the agent killed")
        transitions = [e["message"] for e in store.timeline(task.id) if e["kind"] == "transition"]
        assert transitions[-1].startswith("analysis -> cancelled: work item deleted in Plane")
        writes = [r for r in sandbox_plane.sandbox.request_log if r[0] in ("POST", "PATCH")]
        time.sleep(3)  # a few more passes and flushes: nothing more is written for it
        later = [r for r in sandbox_plane.sandbox.request_log if r[0] in ("POST", "PATCH")]
        assert later == writes
    finally:
        sandbox_plane.sandbox.sender.configure(None)
        procs.stop()


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
