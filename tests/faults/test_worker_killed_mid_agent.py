"""A worker SIGKILLed while an agent runs: the job comes back within ~30 s and finishes."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from app.config import load_registry
from app.domain.stages import Stage
from app.sandbox.plane_runner import BOT_KEY, SandboxPlaneRunner
from app.store import Store
from tests.conftest import RedisServer
from tests.e2e.conftest import wait_for
from tests.faults.test_worker_signals import WorkerProcess
from tests.helpers import (
    SECRET,
    first_item,
    make_remote,
    move,
    pipeline_project,
    write_registry,
)


@pytest.fixture
def env(
    tmp_path: Path,
    redis_server: RedisServer,
    real_redis: redis.Redis,
    sandbox_plane: SandboxPlaneRunner,
) -> dict[str, str]:
    remote = make_remote(tmp_path)
    registry = write_registry(
        tmp_path / "projects.toml",
        {"demo": pipeline_project(remote, sandbox_plane.base_url + "/_sandbox/info")},
    )
    load_registry(registry)  # the file is valid
    return {
        **os.environ,
        "ORCH_REDIS_URL": redis_server.url,
        "ORCH_PLANE_BASE_URL": sandbox_plane.base_url,
        "ORCH_PLANE_API_TOKEN": BOT_KEY,
        "ORCH_PLANE_WEBHOOK_SECRET": SECRET,
        "ORCH_PROJECTS_FILE": str(registry),
        "ORCH_PLANE_RATE_PER_MIN": "100000",
        "ORCH_WORKER_PROMETHEUS": "false",
        "ORCH_REPOS_DIR": str(tmp_path / "repos"),
        "ORCH_JOB_RETRY_BASE_S": "0.2",
    }


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        if w.proc.poll() is None:
            w.signal_group(signal.SIGKILL)
            w.proc.wait()


def test_killed_worker_job_is_redelivered_and_finishes(
    env: dict[str, str],
    workers: list[WorkerProcess],
    tmp_path: Path,
    real_store: Store,
    sandbox_plane: SandboxPlaneRunner,
) -> None:
    from app.queue import EVENTS_QUEUE, PROCESS_EVENT, Dispatcher, make_redis_broker
    from app.sandbox.plane_runner import DEMO_PROJECT_ID

    item = first_item(sandbox_plane)
    with sandbox_plane.sandbox.lock:
        sandbox_plane.sandbox.world.projects[DEMO_PROJECT_ID].items[
            item.id
        ].description_html = "<p>[agent:slow-development=6]</p>"
    workers.append(first := WorkerProcess(env, tmp_path / "w1.log"))
    move(sandbox_plane, item, "To Analyse")
    broker = make_redis_broker(env["ORCH_REDIS_URL"])
    Dispatcher(broker).send(
        EVENTS_QUEUE,
        PROCESS_EVENT,
        {
            "project_id": DEMO_PROJECT_ID,
            "issue_id": item.id,
            "actor_id": "human",
            "event_id": "e-1",
        },
    )
    broker.close()

    def developer_running() -> object:
        task = real_store.get_task_by_issue(item.id)
        job = real_store.active_job(task) if task else None
        ok = job is not None and job.stage is Stage.DEVELOPMENT and job.agent_pgid
        return job if ok else None

    job = wait_for(developer_running, 60, "developer agent running")
    first.signal_group(signal.SIGKILL)  # the agent, in its own session, is orphaned
    first.proc.wait()
    killed = time.monotonic()
    workers.append(WorkerProcess(env, tmp_path / "w2.log"))

    def in_review() -> object:
        task = real_store.get_task_by_issue(item.id)
        return task if task and task.stage is Stage.REVIEW and not task.active_job_id else None

    task = wait_for(in_review, 60, "review after redelivery")
    elapsed = time.monotonic() - killed
    assert elapsed < 45, elapsed  # ~15 s heartbeat timeout + the 6 s agent + the rest
    with pytest.raises(ProcessLookupError):
        os.killpg(job.agent_pgid, 0)  # the orphaned agent was stopped
    developer_runs = [
        e for e in real_store.timeline(task.id) if e["message"].startswith("developer exit 0")
    ]
    assert len(developer_runs) == 1  # the killed run never recorded a result
    print(f"redelivered and finished {elapsed:.1f}s after SIGKILL")
