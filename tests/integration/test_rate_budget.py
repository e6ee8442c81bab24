"""The shared Plane budget holds across OS processes on one real Redis."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import redis

from app.domain.errors import TemporaryError
from app.plane.client import PlaneClient
from app.plane.ratelimit import RateBudget
from app.sandbox.plane_runner import BOT_KEY, SandboxPlaneRunner
from tests.conftest import REPO_ROOT, RedisServer

CALLER = textwrap.dedent("""
    import json, sys, time
    import redis
    from app.plane.ratelimit import RateBudget
    client = redis.Redis.from_url(sys.argv[1])
    budget = RateBudget(client, "pf:plane:rate", per_minute=int(sys.argv[2]))
    while not client.exists("race:go"):
        time.sleep(0.001)
    print(json.dumps(sum(bool(budget.try_acquire()) for _ in range(int(sys.argv[3])))))
""")


def test_three_processes_share_one_budget(
    redis_server: RedisServer, real_redis: redis.Redis
) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CALLER, redis_server.url, "20", "15"],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    real_redis.set("race:go", "1")
    granted = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        granted.append(json.loads(out))
    # 45 attempts within the same minute, 20 allowed in total across processes
    assert sum(granted) == 20


def test_client_waits_for_budget_instead_of_hitting_429(
    real_redis: redis.Redis, sandbox_plane: SandboxPlaneRunner
) -> None:
    sandbox_plane.sandbox.rate_limit = 5
    budget = RateBudget(real_redis, "pf:plane:rate", per_minute=5, margin=0, max_wait_s=0.3)
    counts: dict[str, int] = {}

    def count(name: str) -> None:
        counts[name] = counts.get(name, 0) + 1

    project = next(iter(sandbox_plane.sandbox.world.projects.values()))
    with PlaneClient(sandbox_plane.base_url, BOT_KEY, "acme", budget=budget, count=count) as c:
        for _ in range(5):
            c.list_states(project.id)
        try:
            c.list_states(project.id)
            raise AssertionError("the sixth call should wait for the budget")
        except TemporaryError as exc:
            assert "budget" in str(exc)
    assert counts["plane_calls"] == 5
    assert "plane_429" not in counts  # Plane never had to refuse us
