"""The reconciler's Plane budget on a big board, over simulated time.

    .venv/bin/python -m bench.reconcile_cost [--projects 20] [--items 5000] [--minutes 60]

The sandbox Plane holds the projects and their work items (none changed for an hour);
an embedded Redis; the reconciler driven as the scheduler drives it — a tick every
15 s offers the due projects — on a simulated clock that the sandbox shares, with no
webhooks at all. At minute 10 a human moves one work item to *To Analyse* (its webhook
lost). The budget it is measured against is the default `ORCH_PLANE_RATE_PER_MIN` (50).
Prints a line per simulated 10 minutes and, last, one JSON line: the average calls a
minute after the first round and the share of the budget that is, the pass interval,
seconds until the lost move was replayed, the longest time a project's rolling scan
took to see every item once, and the first round's calls.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from app.config import Settings
from app.embedded_redis import EmbeddedRedis
from app.projects import Registry
from app.queue import make_redis_broker
from app.sandbox.plane_runner import (
    BOT_KEY,
    HUMAN_KEY,
    PIPELINE_STATES,
    SandboxPlaneRunner,
    make_sandbox,
)
from app.services import Services

BUDGET_PER_MIN = 50
TICK_S = 15.0


class SimClock:
    def __init__(self) -> None:
        self.t = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)


def board(world: Any, projects: int, items: int) -> dict[str, Any]:
    human = world.user_for_key(HUMAN_KEY)
    registry: dict[str, Any] = {}
    for p in range(projects):
        project = world.add_project(f"P{p}", f"Project {p}", human, states=PIPELINE_STATES)
        for n in range(items):
            item = world.create_item(project, {"name": f"item {n}"}, human)
            world.backdate(project.id, item.id, 3600)
        registry[f"p{p}"] = {
            "plane_project_id": project.id,
            "repo": f"r{p}",
            "work_item_prefix": f"P{p}",
        }
    return registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--projects", type=int, default=20)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--minutes", type=float, default=60)
    args = parser.parse_args()
    clock = SimClock()
    workdir = Path(tempfile.mkdtemp(prefix="pf-bench-"))
    redis = EmbeddedRedis(workdir).start()
    sandbox = make_sandbox(rate_limit=None)
    world = sandbox.world
    world.wall = clock.wall
    registry = board(world, args.projects, args.items)
    plane = SandboxPlaneRunner(sandbox).start()
    settings = Settings(
        redis_url=redis.url,
        plane_base_url=plane.url,
        plane_api_token=SecretStr(BOT_KEY),
        plane_rate_per_min=100_000,  # the bench does not wait: it counts
        repos_dir=workdir / "repos",
    )
    broker = make_redis_broker(redis.url)
    services = Services(
        settings, registry_override=Registry.model_validate({"projects": registry}), broker=broker
    )
    reconciler = services.reconciler
    reconciler.clock = clock
    reconciler.settings = settings.model_copy(update={"plane_rate_per_min": BUDGET_PER_MIN})
    start = clock.t
    calls: list[tuple[float, int]] = []
    lost: tuple[str, str, float] | None = None
    replayed_after: float | None = None
    print(f"{args.projects} projects x {args.items} work items, {args.minutes:g} simulated min")
    while clock.t - start < args.minutes * 60:
        if lost is None and clock.t - start >= 600:
            project = next(iter(world.projects.values()))
            item = list(project.items.values())[len(project.items) // 2]
            world.move(project.id, item.id, "To Analyse", HUMAN_KEY)
            lost = (project.id, item.id, clock.t)
        for project in reconciler.due_projects():
            report = reconciler.reconcile_project(project)
            calls.append((clock.t - start, report.api_calls))
            if report.replayed and lost is not None and replayed_after is None:
                replayed_after = clock.t - lost[2]
        clock.t += TICK_S
        if int(clock.t - start) % 600 < TICK_S:
            minutes = (clock.t - start) / 60
            print(f"  {minutes:5.0f} min: {sum(c for _, c in calls):6d} calls", flush=True)
    first_round = max((t for t, _ in calls[: args.projects]), default=0.0)
    first = sum(c for _, c in calls[: args.projects])
    rest = [c for t, c in calls[args.projects :]]
    span_min = (args.minutes * 60 - first_round) / 60
    per_min = sum(rest) / span_min if span_min > 0 else 0.0
    covers = [reconciler.state.get(name).covered_in_s for name in registry]
    print(
        json.dumps(
            {
                "projects": args.projects,
                "items": args.items,
                "calls_per_min": round(per_min, 1),
                "budget_share": round(per_min / BUDGET_PER_MIN, 3),
                "interval_s": round(reconciler.interval_s(), 1),
                "lost_webhook_replayed_after_s": replayed_after,
                "cover_s": max((c for c in covers if c is not None), default=None),
                "first_round_calls": first,
            }
        )
    )
    services.close()
    broker.close()
    plane.stop()
    redis.stop()


if __name__ == "__main__":
    main()
