"""Fixtures per level: fakeredis for unit tests, a real redis-server for integration."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
import redis

from app.embedded_redis import EmbeddedRedis
from app.keys import Keys
from app.store import Store

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "plane"  # copied from shared/
REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer(EmbeddedRedis):
    """A real `redis-server` child on a free loopback port; stoppable and restartable."""

    def __init__(self, port: int, workdir: Path) -> None:
        super().__init__(workdir, port=port, require_binary=True)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def real_redis(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def fake_server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def fake_redis(fake_server: fakeredis.FakeServer) -> redis.Redis:
    return fakeredis.FakeRedis(server=fake_server, decode_responses=True)


@pytest.fixture
def store(fake_redis: redis.Redis) -> Store:
    return Store(fake_redis, Keys("pf:"), lock_ttl_s=5, lock_wait_s=5)


@pytest.fixture
def real_store(real_redis: redis.Redis) -> Store:
    return Store(real_redis, Keys("pf:"), lock_ttl_s=5, lock_wait_s=10)


# -- sandbox Plane ------------------------------------------------------------------
from app.sandbox.plane_runner import (  # noqa: E402
    BOT_KEY,
    HUMAN_KEY,
    SandboxPlaneRunner,
    make_sandbox,
    seed_demo,
)


@pytest.fixture
def sandbox_plane() -> Iterator[SandboxPlaneRunner]:
    """The fake Plane on a real loopback port, seeded with the DEMO project, no rate limit."""
    sandbox = make_sandbox(rate_limit=None, webhook_retries=2, webhook_backoff_s=0.05)
    seed_demo(sandbox.world)
    runner = SandboxPlaneRunner(sandbox).start()
    yield runner
    runner.stop()


__all__ = ["BOT_KEY", "HUMAN_KEY"]
