"""Another client spending on planeflow's API key: planeflow keeps clear of 429s.

Time is compressed 20 times (a 3 s window stands for Plane's minute): the sandbox
allows 60 requests a window per key, another client spends 30 a window on the same key,
and two planeflow threads ask for as much as they can for ten windows ("ten minutes").
"""

from __future__ import annotations

import threading
import time

import httpx
import redis

from app.plane.client import PlaneClient
from app.plane.ratelimit import RateBudget
from app.sandbox.plane_runner import BOT_KEY, SandboxPlaneRunner

WINDOW_S = 3.0
MINUTES = 10


def test_a_second_client_on_the_key_causes_at_most_two_429s(
    real_redis: redis.Redis, sandbox_plane: SandboxPlaneRunner
) -> None:
    sandbox = sandbox_plane.sandbox
    sandbox.rate_limit, sandbox.rate_window_s = 60, WINDOW_S
    project = next(iter(sandbox.world.projects.values()))
    stop = threading.Event()
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def count(name: str) -> None:
        with lock:
            counts[name] = counts.get(name, 0) + 1

    def other_client() -> None:  # 30 requests a window, evenly, no budget of ours
        with httpx.Client(base_url=sandbox_plane.base_url) as http:
            while not stop.is_set():
                http.get("/api/v1/users/me/", headers={"X-API-Key": BOT_KEY})
                time.sleep(WINDOW_S / 30)

    done = [0, 0]

    def planeflow(n: int) -> None:
        budget = RateBudget(real_redis, "pf:plane:rate", per_minute=50, window_s=WINDOW_S)
        with PlaneClient(
            sandbox_plane.base_url, BOT_KEY, "acme", budget=budget, count=count, retries=5
        ) as client:
            while not stop.is_set():
                client.list_states(project.id)
                done[n] += 1

    threads = [threading.Thread(target=other_client)]
    threads += [threading.Thread(target=planeflow, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(WINDOW_S * MINUTES)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert counts.get("plane_429", 0) <= 2, counts
    # what the key had left was used: about 30 a window less the safety margin
    assert sum(done) >= MINUTES * 20, done
