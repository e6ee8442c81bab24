"""Integration fixtures: planeflow's services on fakeredis against the sandbox Plane."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from app.projects import Registry
from app.queue import make_redis_broker
from app.sandbox.plane_runner import SandboxPlaneRunner
from app.services import Services
from tests.helpers import registry, settings

MakeServices = Callable[..., Services]


@pytest.fixture
def make_services(
    tmp_path: Path,
    sandbox_plane: SandboxPlaneRunner,
    fake_redis: Any,
    fake_server: fakeredis.FakeServer,
) -> Iterator[MakeServices]:
    """Services (fake Redis, a broker on it) for the DEMO registry or `reg`; closed after."""
    made: list[tuple[Services, Any]] = []

    def make(reg: Registry | None = None, **overrides: Any) -> Services:
        broker = make_redis_broker(client=fakeredis.FakeRedis(server=fake_server))
        svc = Services(
            settings(tmp_path, plane_url=sandbox_plane.base_url, **overrides),
            redis=fake_redis,
            registry_override=reg or registry(),
            broker=broker,
        )
        made.append((svc, broker))
        return svc

    yield make
    for svc, broker in made:
        svc.close()
        broker.close()


@pytest.fixture
def services(make_services: MakeServices) -> Services:
    return make_services()
