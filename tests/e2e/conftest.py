"""End-to-end fixtures: a real redis-server, a real Dramatiq Worker thread, the sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from actors.worker import start_worker
from app.config import Settings
from app.sandbox.plane_runner import BOT_KEY, SandboxPlaneRunner
from app.services import Services
from tests.conftest import REPO_ROOT, RedisServer
from tests.helpers import SECRET, registry, settings


@pytest.fixture
def e2e_settings(
    tmp_path: Path,
    redis_server: RedisServer,
    real_redis: redis.Redis,
    sandbox_plane: SandboxPlaneRunner,
) -> Settings:
    # A budget far above the sandbox's needs: these tests are not about the rate limit.
    return settings(
        tmp_path,
        redis_url=redis_server.url,
        plane_url=sandbox_plane.base_url,
        plane_rate_per_min=100_000,
    )


@pytest.fixture
def worker(e2e_settings: Settings) -> Iterator[Services]:
    """A Dramatiq Worker (8 threads) in this process; joined and stopped afterwards."""
    services = Services(e2e_settings, registry_override=registry())
    w, services = start_worker(
        e2e_settings,
        threads=8,
        services=services,
        client=redis.Redis.from_url(e2e_settings.redis_url),
    )
    services.__dict__["worker"] = w
    yield services
    w.stop(timeout=10_000)
    w.broker.close()
    services.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


def cli_env(
    tmp_path: Path, redis_url: str, plane_url: str, registry_file: Path, **extra: str
) -> dict[str, str]:
    """The environment of `planeflow web|worker|scheduler` processes started by a test."""
    return {
        **os.environ,
        "ORCH_REDIS_URL": redis_url,
        "ORCH_PLANE_BASE_URL": plane_url,
        "ORCH_PLANE_API_TOKEN": BOT_KEY,
        "ORCH_PLANE_WEBHOOK_SECRET": SECRET,
        "ORCH_PROJECTS_FILE": str(registry_file),
        "ORCH_REPOS_DIR": str(tmp_path / "repos"),
        "ORCH_SPOOL_DIR": str(tmp_path / "spool"),
        "ORCH_PLANE_RATE_PER_MIN": "100000",
        "ORCH_WORKER_PROMETHEUS": "false",
        **extra,
    }


class Processes:
    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "app.cli", *args],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def web_up(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def stack(
    tmp_path: Path,
    redis_server: RedisServer,
    real_redis: redis.Redis,
    sandbox_plane: SandboxPlaneRunner,
) -> Iterator[Any]:
    """The whole stack (`tests.e2e.stack`) for the DEMO project."""
    from tests.e2e.stack import make_stack

    yield from make_stack(tmp_path, redis_server, sandbox_plane)
