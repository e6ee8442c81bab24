"""`planeflow worker` under SIGTERM to its process group, and after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from app.queue import EVENTS_QUEUE, PROCESS_EVENT, Dispatcher, make_redis_broker
from app.sandbox.plane_runner import BOT_KEY, DEMO_PROJECT_ID, SandboxPlaneRunner
from app.store import Store
from tests.conftest import REPO_ROOT, RedisServer, free_port
from tests.e2e.conftest import wait_for
from tests.helpers import SECRET, first_item, move


@pytest.fixture
def worker_env(
    tmp_path: Path,
    redis_server: RedisServer,
    real_redis: redis.Redis,
    sandbox_plane: SandboxPlaneRunner,
) -> dict[str, str]:
    registry_file = tmp_path / "projects.toml"
    registry_file.write_text(
        f'[projects.demo]\nplane_project_id = "{DEMO_PROJECT_ID}"\n'
        'repo = "demo-repo"\nwork_item_prefix = "DEMO"\n'
    )
    return {
        **os.environ,
        "ORCH_REDIS_URL": redis_server.url,
        "ORCH_PLANE_BASE_URL": sandbox_plane.base_url,
        "ORCH_PLANE_API_TOKEN": BOT_KEY,
        "ORCH_PLANE_WEBHOOK_SECRET": SECRET,
        "ORCH_PROJECTS_FILE": str(registry_file),
        "ORCH_PLANE_RATE_PER_MIN": "100000",
        "ORCH_WORKER_PROMETHEUS": "false",
    }


class WorkerProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.log_file = open(log, "wb")  # noqa: SIM115 (the child writes it until it exits)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.cli",
                "worker",
                "--threads",
                "2",
                "--shutdown-timeout",
                "20",
            ],
            cwd=REPO_ROOT,
            env=env,
            start_new_session=True,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: b"worker ready" in log.read_bytes(), 30, "worker ready")

    def signal_group(self, sig: signal.Signals) -> None:
        os.killpg(self.proc.pid, sig)


@pytest.fixture
def spawn(worker_env: dict[str, str], tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        if w.proc.poll() is None:
            w.signal_group(signal.SIGKILL)
            w.proc.wait()


def in_flight(client: redis.Redis) -> bool:
    return any(client.scard(key) for key in client.scan_iter("dramatiq:__acks__.*"))


def send_start(redis_server: RedisServer, sandbox_plane: SandboxPlaneRunner, slow_s: float) -> str:
    item = first_item(sandbox_plane)
    move(sandbox_plane, item, "To Analyse")
    sandbox_plane.sandbox.faults[item.id] = f"slow:{slow_s}"  # reading the item takes a while
    broker = make_redis_broker(redis_server.url)
    Dispatcher(broker).send(
        EVENTS_QUEUE,
        PROCESS_EVENT,
        {
            "project_id": DEMO_PROJECT_ID,
            "issue_id": item.id,
            "actor_id": "human",
            "event_id": f"{int(time.time() * 1000)}-0",  # as the receiver stores it
        },
    )
    broker.close()
    return item.id


def test_sigterm_to_the_process_group_finishes_in_flight_work(
    spawn: list[WorkerProcess],
    worker_env: dict[str, str],
    tmp_path: Path,
    redis_server: RedisServer,
    real_redis: redis.Redis,
    real_store: Store,
    sandbox_plane: SandboxPlaneRunner,
) -> None:
    spawn.append(worker := WorkerProcess(worker_env, tmp_path / "w1.log"))
    issue_id = send_start(redis_server, sandbox_plane, 2)
    wait_for(lambda: in_flight(real_redis), 20, "message in flight")
    worker.signal_group(signal.SIGTERM)
    assert worker.proc.wait(timeout=40) == 0
    log = worker.log.read_text()
    assert "shutting down gracefully" in log and "worker stopped" in log
    # the in-flight message finished: task created, message acked, nothing stranded
    assert real_store.get_task_by_issue(issue_id) is not None
    assert real_redis.llen("dramatiq:events") == 0
    assert not in_flight(real_redis)


def test_sigkilled_worker_message_is_redelivered_within_about_30s(
    spawn: list[WorkerProcess],
    worker_env: dict[str, str],
    tmp_path: Path,
    redis_server: RedisServer,
    real_redis: redis.Redis,
    real_store: Store,
    sandbox_plane: SandboxPlaneRunner,
) -> None:
    spawn.append(first := WorkerProcess(worker_env, tmp_path / "w1.log"))
    issue_id = send_start(redis_server, sandbox_plane, 6)
    wait_for(lambda: in_flight(real_redis), 20, "message in flight")
    first.signal_group(signal.SIGKILL)
    first.proc.wait()
    killed_at = time.monotonic()
    sandbox_plane.sandbox.faults.clear()
    spawn.append(WorkerProcess(worker_env, tmp_path / "w2.log"))
    wait_for(lambda: real_store.get_task_by_issue(issue_id), 45, "redelivery")
    redelivered_after = time.monotonic() - killed_at
    assert redelivered_after < 35, redelivered_after
    task = real_store.get_task_by_issue(issue_id)
    assert task is not None
    assert sum(e["kind"] == "created" for e in real_store.timeline(task.id)) == 1


def test_worker_serves_dramatiq_metrics_and_logs_no_critical(
    worker_env: dict[str, str],
    tmp_path: Path,
    redis_server: RedisServer,
    real_redis: redis.Redis,
    real_store: Store,
    sandbox_plane: SandboxPlaneRunner,
) -> None:
    port = free_port()
    env = {
        **worker_env,
        "ORCH_WORKER_PROMETHEUS": "true",
        "dramatiq_prom_port": str(port),
        "dramatiq_prom_host": "127.0.0.1",
        "dramatiq_prom_db": str(tmp_path / "prom"),
    }
    (tmp_path / "prom").mkdir()
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        issue_id = send_start(redis_server, sandbox_plane, 1.5)

        def scrape() -> str:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text
            except httpx.HTTPError:
                return ""
            return text if "dramatiq_messages_inprogress" in text else ""

        during = wait_for(scrape, 20, "metrics while the message runs")
        assert "dramatiq_messages_inprogress" in during
        # planeflow's own, from Redis: tasks per stage, queue depth, webhook lag, ...
        assert 'planeflow_tasks{stage="analysis"}' in during
        assert 'planeflow_queue_depth{kind="ready",queue="jobs"}' in during
        wait_for(lambda: real_store.get_task_by_issue(issue_id), 30, "event processed")
        after = wait_for(
            lambda: (
                (t := scrape()) and 'dramatiq_messages_total{actor_name="process_event"' in t and t
            ),
            20,
            "message counted",
        )
        assert 'queue_name="events"' in after
        assert "planeflow_shared_total" in after
        assert 'planeflow_webhook_lag_seconds_count{source="plane"} 1.0' in after
    finally:
        os.killpg(worker.proc.pid, signal.SIGTERM)
        worker.proc.wait(30)
    log = worker.log.read_text()
    assert "CRITICAL" not in log, log
