"""`planeflow retry | cancel | tasks --watch | explain --follow`, as their own processes."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.domain.stages import Stage
from app.store import Store
from tests.conftest import REPO_ROOT, RedisServer
from tests.helpers import write_registry

pytestmark = pytest.mark.redis_server
ISSUE = "1ab9770d-8f54-4954-a3c2-8b90a164eded"


@pytest.fixture
def env(tmp_path: Path, redis_server: RedisServer) -> dict[str, str]:
    registry = write_registry(
        tmp_path / "projects.toml",
        {
            "demo": {
                "plane_project_id": "5f0c1d2e-0000-4000-8000-00000000de00",
                "repo": str(tmp_path / "repo"),
                "work_item_prefix": "DEMO",
            }
        },
    )
    return {**os.environ, "ORCH_REDIS_URL": redis_server.url, "ORCH_PROJECTS_FILE": str(registry)}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "--log-level", "WARNING", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def blocked_task(store: Store) -> str:
    task, _ = store.create_task_atomic(
        ISSUE, "DEMO-1", "repo", "b", Stage.ANALYSIS, "Fix it", project="demo"
    )
    store.move_task(task.id, Stage.BLOCKED, "agent failed", failed_stage=Stage.DEVELOPMENT)
    return task.id


def test_retry_then_cancel_from_the_cli(env: dict[str, str], real_store: Store) -> None:
    task_id = blocked_task(real_store)
    done = run(env, "retry", "demo-1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "DEMO-1: resumed: at development"
    again = run(env, "retry", "DEMO-1")
    assert again.returncode == 1
    assert "nothing to retry: the task is in development, not blocked" in again.stdout
    assert run(env, "cancel", "DEMO-1").returncode == 0
    user = getpass.getuser()
    actions = [e["message"] for e in real_store.timeline(task_id) if e["kind"] == "action"]
    assert actions[0] == f"retry by cli (user {user}): resumed: at development"
    assert actions[-1] == f"cancel by cli (user {user}): cancelled"
    assert real_store.r.llen("dramatiq:jobs") == 1  # the resumed stage's job was sent


def test_an_unknown_work_item_is_one_line_and_exit_1(env: dict[str, str]) -> None:
    result = run(env, "cancel", "DEMO-404")
    assert result.returncode == 1
    assert result.stderr.startswith("planeflow: error: no task for DEMO-404")


def test_tasks_watch_prints_the_board_again_when_it_changes(
    env: dict[str, str], real_store: Store
) -> None:
    task_id = blocked_task(real_store)
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "tasks", "--watch", "--interval", "0.2"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    out = Output(proc)
    try:
        assert "DEMO-1     blocked" in out.until("blocked 1")
        real_store.move_task(task_id, Stage.DEVELOPMENT, "test")
        assert "DEMO-1     development" in out.until("development 1")
    finally:
        proc.terminate()
        proc.wait(10)


def test_explain_follow_prints_each_new_decision(env: dict[str, str], real_store: Store) -> None:
    task_id = blocked_task(real_store)
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "explain", "DEMO-1", "--follow"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    out = Output(proc)
    try:
        out.until("analysis -> blocked: agent failed")
        real_store.move_task(task_id, Stage.DEVELOPMENT, "resumed by hand")
        out.until("blocked -> development: resumed by hand")
    finally:
        proc.terminate()
        proc.wait(10)


class Output:
    """A process's stdout, read by a thread as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.text = ""
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.text += line

    def until(self, text: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.text:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not printed; got {self.text[-2000:]!r}")
            time.sleep(0.05)
        return self.text
