"""Operator mistakes: one line `planeflow: error: ...`, a documented exit code, no
traceback (README "Operator errors"). The CLI runs as its own process, as users run it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.embedded_redis import free_port
from tests.conftest import REPO_ROOT, RedisServer
from tests.helpers import write_registry

EXAMPLE = REPO_ROOT / "projects.example.toml"


def run(
    *args: str, env: dict[str, str] | None = None, stdout: int | None = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "ORCH_REDIS_URL": "redis://127.0.0.1:1/0", **(env or {})},
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )


@pytest.fixture
def web_env(tmp_path: Path) -> dict[str, str]:
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
    return {
        "ORCH_PROJECTS_FILE": str(registry),
        "ORCH_PLANE_WEBHOOK_SECRET": "s",
        "ORCH_SPOOL_DIR": str(tmp_path / "spool"),
    }


def one_line(proc: subprocess.CompletedProcess[str], code: int, says: str) -> None:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("planeflow: error: "), proc.stderr
    assert says in lines[0] and "Traceback" not in proc.stderr


def test_version() -> None:
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("planeflow 0.")


def test_port_in_use(web_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        one_line(run("web", "--port", port, env=web_env), 5, f"cannot listen on 127.0.0.1:{port}")


def test_unknown_host(web_env: dict[str, str]) -> None:
    one_line(run("web", "--host", "no-such-host.invalid", env=web_env), 5, "cannot listen on")


def test_redis_url_without_a_scheme() -> None:
    proc = run("status", env={"ORCH_REDIS_URL": "localhost:6379"})
    one_line(proc, 1, "ORCH_REDIS_URL: 'localhost:6379' is not a Redis URL")


def test_unknown_log_level() -> None:
    one_line(run("--log-level", "LOUD", "status"), 2, "invalid choice: 'LOUD'")


def test_redis_unreachable(web_env: dict[str, str]) -> None:
    one_line(run("status", env=web_env), 3, "Redis unreachable at redis://127.0.0.1:1/0")


def test_output_closed_by_the_reader_is_quiet(web_env: dict[str, str]) -> None:
    read, write = os.pipe()
    os.close(read)  # like `| head` that has already exited
    try:
        proc = run("config", "check", "--projects", str(EXAMPLE), env=web_env, stdout=write)
    finally:
        os.close(write)
    assert proc.returncode == 141 and proc.stderr == ""


def test_web_listens_on_paas_port(web_env: dict[str, str]) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "web"],
        cwd=REPO_ROOT,
        env={**os.environ, **web_env, "PORT": str(port), "ORCH_REDIS_URL": "redis://127.0.0.1:1/0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(20)


def test_replay_of_an_event_that_is_not_stored(
    web_env: dict[str, str], redis_server: RedisServer
) -> None:
    env = {**web_env, "ORCH_REDIS_URL": redis_server.url, "ORCH_PLANE_USER_ID": "me"}
    one_line(run("replay", "123-0", env=env), 1, "no stored event 123-0")


def test_plane_unreachable(web_env: dict[str, str], redis_server: RedisServer) -> None:
    env = {
        **web_env,
        "ORCH_REDIS_URL": redis_server.url,
        "ORCH_PLANE_BASE_URL": f"http://127.0.0.1:{free_port()}",
        "ORCH_PLANE_API_TOKEN": "k",
        "ORCH_PLANE_RETRIES": "0",
    }
    one_line(run("plane", "ensure-states", "--project", "demo", env=env), 4, "Plane: ")


def test_ctrl_c() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "sandbox-plane", "--port", str(free_port())],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Ctrl-C to stop" in line:
            break
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal sends
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err, err
