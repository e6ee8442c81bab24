"""Another client spending on planeflow's Plane API key: how many 429s planeflow sees.

    .venv/bin/python -m bench.budget_share [--minutes 10] [--window 60] [--other 30]

The sandbox Plane allows 60 requests a window per key (Plane's window is a minute);
another client spends `--other` of them a window, evenly, on the same key; two planeflow
threads on the default budget (50 a minute) ask for as much as they can. Prints one JSON
line: planeflow's calls and 429s, the other client's 429s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from app.embedded_redis import EmbeddedRedis
from app.plane.client import PlaneClient
from app.plane.ratelimit import RateBudget
from app.sandbox.plane_runner import BOT_KEY, SandboxPlaneRunner, make_sandbox, seed_demo


def scenario(
    plane: SandboxPlaneRunner, client: redis.Redis, *, window_s: float, windows: float, other: int
) -> dict[str, Any]:
    """Run both clients for `windows` windows; what each got."""
    sandbox = plane.sandbox
    sandbox.rate_limit, sandbox.rate_window_s = 60, window_s
    project = next(iter(sandbox.world.projects.values()))
    stop = threading.Event()
    counts: dict[str, int] = {}
    lock = threading.Lock()
    theirs = {"calls": 0, "429": 0}

    def count(name: str) -> None:
        with lock:
            counts[name] = counts.get(name, 0) + 1

    def other_client() -> None:  # `other` requests a window, evenly, no budget of ours
        with httpx.Client(base_url=plane.base_url) as http:
            while not stop.is_set():
                answer = http.get("/api/v1/users/me/", headers={"X-API-Key": BOT_KEY})
                theirs["calls"] += 1
                theirs["429"] += answer.status_code == 429
                time.sleep(window_s / other)

    def planeflow() -> None:
        budget = RateBudget(client, "pf:plane:rate", per_minute=50, window_s=window_s)
        with PlaneClient(
            plane.base_url, BOT_KEY, "acme", budget=budget, count=count, retries=5
        ) as api:
            while not stop.is_set():
                api.list_states(project.id)

    threads = [threading.Thread(target=other_client)]
    threads += [threading.Thread(target=planeflow) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(window_s * windows)
    stop.set()
    for thread in threads:
        thread.join(window_s + 30)
    return {
        "planeflow_calls": counts.get("plane_calls", 0),
        "planeflow_429": counts.get("plane_429", 0),
        "other_calls": theirs["calls"],
        "other_429": theirs["429"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--window", type=float, default=60.0, help="seconds (Plane: 60)")
    parser.add_argument("--other", type=int, default=30, help="the other client's requests")
    args = parser.parse_args()
    store = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="pf-bench-")), require_binary=True).start()
    sandbox = make_sandbox(rate_limit=60)
    seed_demo(sandbox.world, items=1)
    plane = SandboxPlaneRunner(sandbox).start()
    try:
        client = redis.Redis.from_url(store.url)
        figures = scenario(
            plane, client, window_s=args.window, windows=args.minutes, other=args.other
        )
    finally:
        plane.stop()
        store.stop()
    print(json.dumps({"minutes": args.minutes, "window_s": args.window, **figures}))


if __name__ == "__main__":
    main()
