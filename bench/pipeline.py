"""A team's busy board: N cards on one repository moved together, Plane at its rate limit.

    .venv/bin/python -m bench.pipeline [--cards 10] [--rate 60] [--timeout 900]

Starts a real `redis-server`, the sandbox Plane (in this process, `--rate` requests a
minute per API key, as real Plane), a local bare git repository with the sample agents
and gate, and `planeflow web`, `worker` and `scheduler` as their own processes with the
default budget — as users run them. Then a human moves every card to *To Analyse* at
once and approves each as it reaches *Code Review*. Prints a line per event and, last,
one JSON line: seconds until all reached Code Review and until all reached Done, Plane
calls per item (counted by the sandbox: every call but `users/me` and the states list,
divided by the cards; `item_calls` only those naming a card), 429s, blocked cards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from app.embedded import make_bare_repo
from app.embedded_redis import EmbeddedRedis, free_port
from app.projects import registry_toml
from app.sandbox.plane_runner import (
    BOT_KEY,
    DEMO_PROJECT_ID,
    JOURNEY,
    SandboxPlaneRunner,
    make_sandbox,
    seed_demo,
)
from app.sandbox.plane_state import SandboxPlane

SECRET = "bench-pipeline-secret"
FULL_JOURNEY = list(JOURNEY)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def project(remote: Path, health_url: str) -> dict[str, Any]:
    py = sys.executable
    return {
        "plane_project_id": DEMO_PROJECT_ID,
        "repo": str(remote),
        "work_item_prefix": "DEMO",
        "forge": "git",
        "default_branch": "main",
        "agents": {
            role: {"argv": [py, str(EXAMPLES / "agents" / f"{role}.py")], "time_limit_s": 120}
            for role in ("analyst", "developer", "reviewer")
        },
        "gates": [
            {"name": "flag", "argv": [py, str(EXAMPLES / "gates" / "check_flag.py")]},
        ],
        "deploy": [py, "-c", "print('deployed')"],
        "health_url": health_url,
        "health_window_s": 2.0,
        "health_interval_s": 1.0,
    }


def shows_every_state(history: list[str]) -> bool:
    return history[-len(FULL_JOURNEY) :] == FULL_JOURNEY


class Board:
    """The human's side: reads the sandbox and moves cards (not through the API)."""

    def __init__(self, sandbox: SandboxPlane) -> None:
        self.sandbox = sandbox
        self.human = sandbox.human_key or ""
        with sandbox.lock:
            self.ids = list(sandbox.world.projects[DEMO_PROJECT_ID].items)

    def state(self, item_id: str) -> str:
        with self.sandbox.lock:
            item = self.sandbox.world.projects[DEMO_PROJECT_ID].items[item_id]
            return str(self.sandbox.world.projects[DEMO_PROJECT_ID].states[item.state_id].name)

    def move(self, item_id: str, state: str) -> None:
        with self.sandbox.lock:
            self.sandbox.world.move(DEMO_PROJECT_ID, item_id, state, self.human)

    def histories(self) -> list[list[str]]:
        with self.sandbox.lock:
            return [self.sandbox.world.state_history(i) for i in self.ids]

    def calls(self) -> dict[str, Any]:
        with self.sandbox.lock:
            log = list(self.sandbox.request_log)
            refused = sum(self.sandbox.refused.values())
        shared = [p for _, p in log if p.endswith("/users/me/") or p.endswith("/states/")]
        per_item = [p for _, p in log if any(i in p for i in self.ids)]
        return {
            "total": len(log),
            "shared": len(shared),
            "item_calls": len(per_item),
            "per_item": round((len(log) - len(shared)) / len(self.ids), 2),
            "429": refused,
        }


def wait_ready(url: str, procs: list[subprocess.Popen[bytes]], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise SystemExit("bench: a planeflow process exited early (see its log)")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"bench: {url} not ready after {timeout_s}s")


def drive(board: Board, timeout_s: float) -> dict[str, Any]:
    start = time.monotonic()
    for item_id in board.ids:
        board.move(item_id, "To Analyse")
    review: dict[str, float] = {}
    ended: dict[str, tuple[str, float]] = {}
    while len(ended) < len(board.ids) and time.monotonic() - start < timeout_s:
        for item_id in board.ids:
            if item_id in ended:
                continue
            state = board.state(item_id)
            now = time.monotonic() - start
            if state == "Code Review" and item_id not in review:
                review[item_id] = now
                board.move(item_id, "Approved")
                print(f"{now:6.1f}s  {len(review)}/{len(board.ids)} in Code Review", flush=True)
            elif state in ("Done", "Blocked"):
                ended[item_id] = (state, now)
                print(f"{now:6.1f}s  {item_id[:8]} {state}", flush=True)
        time.sleep(0.2)
    done = [t for s, t in ended.values() if s == "Done"]
    return {
        "seconds_to_review": round(max(review.values()), 1)
        if len(review) == len(board.ids)
        else None,
        "seconds_to_done": round(max(done), 1) if len(done) == len(board.ids) else None,
        "done": len(done),
        "blocked": sum(1 for s, _ in ended.values() if s == "Blocked"),
        "unfinished": len(board.ids) - len(ended),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cards", type=int, default=10)
    parser.add_argument("--rate", type=int, default=60, help="sandbox requests/min per key")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pf-bench-pipeline-"))
    store = EmbeddedRedis(work / "redis", require_binary=True).start()
    sandbox = make_sandbox(rate_limit=args.rate, webhook_backoff_s=0.5)
    seed_demo(sandbox.world, items=args.cards)
    plane = SandboxPlaneRunner(sandbox).start()
    web_port = free_port()
    sandbox.sender.configure(f"http://127.0.0.1:{web_port}/webhooks/plane", SECRET)
    remote = make_bare_repo(work)
    registry = work / "projects.toml"
    registry.write_text(
        registry_toml({"demo": project(remote, f"http://127.0.0.1:{web_port}/healthz")})
    )
    env = {
        **os.environ,
        "ORCH_REDIS_URL": store.url,
        "ORCH_PLANE_BASE_URL": plane.base_url,
        "ORCH_PLANE_API_TOKEN": BOT_KEY,
        "ORCH_PLANE_WEBHOOK_SECRET": SECRET,
        "ORCH_PROJECTS_FILE": str(registry),
        "ORCH_REPOS_DIR": str(work / "repos"),
        "ORCH_SPOOL_DIR": str(work / "spool"),
        "ORCH_WEB_PORT": str(web_port),
        "ORCH_WORKER_PROMETHEUS": "false",
    }
    planeflow = shutil.which("planeflow", path=str(Path(sys.executable).parent)) or "planeflow"
    procs = [
        subprocess.Popen(
            [planeflow, name], env=env, stdout=(work / f"{name}.log").open("wb"), stderr=-2
        )
        for name in ("web", "worker", "scheduler")
    ]
    try:
        wait_ready(f"http://127.0.0.1:{web_port}/healthz", procs)
        figures = drive(Board(sandbox), args.timeout)
        time.sleep(1)
        board = Board(sandbox)
        calls = board.calls()
        histories = board.histories()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        plane.stop()
        store.stop()
    print(f"logs: {work}", file=sys.stderr)
    print(
        json.dumps(
            {
                "cards": args.cards,
                "rate_per_min": args.rate,
                **figures,
                "calls_per_item": calls["per_item"],
                "item_calls_per_item": round(calls["item_calls"] / args.cards, 2),
                "calls_total": calls["total"],
                "rate_limited_429": calls["429"],
                "every_state_shown": sum(shows_every_state(h) for h in histories),
            }
        )
    )


if __name__ == "__main__":
    main()
