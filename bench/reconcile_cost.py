"""What a reconcile pass costs in Plane API calls: full scan versus incremental.

    .venv/bin/python -m bench.reconcile_cost [--projects 20] [--items 300]

Against the sandbox Plane (per_page 100) and an embedded Redis: one full pass, then an
idle incremental pass, then an incremental pass after one change per project.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from app.config import Settings
from app.embedded_redis import EmbeddedRedis
from app.projects import Registry
from app.queue import make_redis_broker
from app.sandbox.plane_runner import BOT_KEY, HUMAN_KEY, SandboxPlaneRunner, make_sandbox
from app.services import Services


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--projects", type=int, default=20)
    parser.add_argument("--items", type=int, default=300)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pf-bench-"))
    redis = EmbeddedRedis(workdir).start()
    sandbox = make_sandbox(rate_limit=None)
    world = sandbox.world
    human = world.user_for_key(HUMAN_KEY)
    projects: dict[str, Any] = {}
    for p in range(args.projects):
        project = world.add_project(f"P{p}", f"Project {p}", human)
        for n in range(args.items):
            item = world.create_item(project, {"name": f"item {n}"}, human)
            world.backdate(project.id, item.id, 3600)
        projects[f"p{p}"] = {
            "plane_project_id": project.id,
            "repo": f"r{p}",
            "work_item_prefix": f"P{p}",
        }
    plane = SandboxPlaneRunner(sandbox).start()
    settings = Settings(
        redis_url=redis.url,
        plane_base_url=plane.url,
        plane_api_token=SecretStr(BOT_KEY),
        plane_rate_per_min=100_000,
    )
    broker = make_redis_broker(redis.url)
    services = Services(
        settings, registry_override=Registry.model_validate({"projects": projects}), broker=broker
    )
    reconciler = services.reconciler

    def one_pass(label: str) -> None:
        t0 = time.perf_counter()
        reports = reconciler.reconcile_plane_once()
        calls = sum(r.api_calls for r in reports)
        scanned = sum(r.scanned for r in reports)
        print(
            f"{label:<34} {calls:>5} API calls, {scanned:>6} items read, "
            f"{time.perf_counter() - t0:.2f}s; at 50 calls/min: {calls / 50:.1f} min"
        )

    print(f"{args.projects} projects x {args.items} work items")
    one_pass("first pass (full scan + states)")
    one_pass("idle incremental pass")
    for project in world.projects.values():
        item = next(iter(project.items.values()))
        world.update_item(project, item, {"priority": "high"}, human)
    one_pass("incremental, 1 change per project")
    services.close()
    broker.close()
    plane.stop()
    redis.stop()


if __name__ == "__main__":
    main()
