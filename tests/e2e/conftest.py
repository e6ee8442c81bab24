"""End-to-end fixtures: a real redis-server, a real Dramatiq Worker thread, the sandbox."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from actors.worker import start_worker
from app.config import Settings
from app.sandbox.plane_runner import SandboxPlaneRunner
from app.services import Services
from tests.conftest import RedisServer
from tests.helpers import registry, settings


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
