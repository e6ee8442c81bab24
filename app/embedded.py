"""`planeflow up`: the whole stack on one machine with nothing to install by hand.

An embedded Redis (a `redis-server` child when the binary exists, else fakeredis's
in-process TCP server), the sandbox Plane seeded with a demo project, a local bare
git repository as the forge, the sample agents, the receiver, a worker and the
scheduler. Then one work item travels analysis -> ... -> done while you watch: a
human's moves are played through the sandbox Plane, everything else is planeflow.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis as redislib
from pydantic import SecretStr

from actors.scheduler import Scheduler
from actors.worker import start_worker
from app import logs
from app.config import Settings
from app.domain.stages import Stage
from app.embedded_redis import EmbeddedRedis, free_port
from app.plane.status import STAGE_STATUS_KEY
from app.projects import Registry
from app.queue import Dispatcher, make_redis_broker
from app.sandbox.plane_runner import (
    BOT_KEY,
    DEMO_PROJECT_ID,
    SandboxPlaneRunner,
    make_sandbox,
    seed_demo,
)
from app.sandbox.serve import ThreadedServer
from app.services import Services
from app.web import create_app

log = logging.getLogger(__name__)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SECRET = "embedded-demo-webhook-secret"


def make_bare_repo(workdir: Path) -> Path:
    remote, seed = workdir / "demo-remote.git", workdir / "seed"
    ident = ["-c", "user.name=planeflow demo", "-c", "user.email=demo@localhost"]

    def git(*args: str) -> None:
        subprocess.run(["git", *ident, *args], check=True, capture_output=True)

    git("init", "--quiet", "--bare", "-b", "main", str(remote))
    git("init", "--quiet", "-b", "main", str(seed))
    (seed / "README.md").write_text("# demo service\n\nManaged by planeflow.\n")
    git("-C", str(seed), "add", "-A")
    git("-C", str(seed), "commit", "--quiet", "-m", "Initial commit")
    git("-C", str(seed), "push", "--quiet", str(remote), "main")
    return remote


def demo_registry(remote: Path, health_url: str) -> Registry:
    py = sys.executable
    agents = {
        role: {
            "argv": [py, str(EXAMPLES / "agents" / f"{role}.py")],
            "time_limit_s": 120,
            "max_attempts": 2,
        }
        for role in ("analyst", "developer", "reviewer")
    }
    return Registry.model_validate(
        {
            "projects": {
                "demo": {
                    "plane_project_id": DEMO_PROJECT_ID,
                    "repo": str(remote),
                    "work_item_prefix": "DEMO",
                    "forge": "git",
                    "default_branch": "main",
                    "agents": agents,
                    "gates": [
                        {
                            "name": "flag",
                            "argv": [py, str(EXAMPLES / "gates" / "check_flag.py")],
                            "timeout_s": 60,
                        }
                    ],
                    "deploy": [py, "-c", "print('deployed the demo service')"],
                    "health_url": health_url,
                    "health_window_s": 4,
                    "health_interval_s": 1,
                }
            }
        }
    )


class Demo:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.stoppers: list[Any] = []

    def start(self) -> None:
        self.redis = EmbeddedRedis(self.workdir).start()
        self.stoppers.append(self.redis.stop)
        if self.redis.kind.startswith("in-process fakeredis"):
            logs.soften_consumer_reconnects()
        sandbox = make_sandbox(rate_limit=None, webhook_backoff_s=0.2)
        seed_demo(sandbox.world, items=3)
        self.plane = SandboxPlaneRunner(sandbox).start()
        self.stoppers.append(self.plane.stop)
        web_port = free_port()
        self.web_url = f"http://127.0.0.1:{web_port}"
        self.registry = demo_registry(make_bare_repo(self.workdir), self.web_url + "/healthz")
        self.settings = self._settings()
        services = Services(self.settings, registry_override=self.registry)
        worker, self.services = start_worker(
            self.settings,
            threads=4,
            services=services,
            client=redislib.Redis.from_url(self.redis.url),
        )

        def stop_worker() -> None:
            worker.stop(timeout=15_000)
            worker.broker.close()
            self.services.close()

        self.stoppers.append(stop_worker)
        web = ThreadedServer(
            create_app(
                self.settings,
                registry=self.registry,
                redis_client=self.services.store.r,
                listen_host="127.0.0.1",
                services=self.services,
            ),
            port=web_port,
        ).start()
        self.stoppers.append(web.stop)
        sandbox.sender.configure(self.web_url + "/webhooks/plane", SECRET)
        broker = make_redis_broker(self.redis.url)
        scheduler = Scheduler(self.settings, self.services.store.r, Dispatcher(broker))
        stop = threading.Event()
        thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
        thread.start()

        def stop_scheduler() -> None:
            stop.set()
            thread.join(5)
            broker.close()

        self.stoppers.append(stop_scheduler)

    def _settings(self) -> Settings:
        return Settings(
            redis_url=self.redis.url,
            plane_base_url=self.plane.url,
            plane_api_token=SecretStr(BOT_KEY),
            plane_webhook_secret=SecretStr(SECRET),
            repos_dir=self.workdir / "repos",
            spool_dir=self.workdir / "spool",
            projects_file=self.workdir / "projects.toml",
            worker_prometheus=False,
            reconcile_interval_s=10,
            scheduler_tick_s=5,
            job_retry_base_s=1,
            cap_wait_s=1,
            plane_rate_per_min=600,
        )

    def stop(self) -> None:
        for stopper in reversed(self.stoppers):
            try:
                stopper()
            except Exception as exc:
                log.warning("demo shutdown: %s", exc)

    # -- the human's side ------------------------------------------------------------------
    def move(self, item_id: str, state: str) -> None:
        sandbox = self.plane.sandbox
        with sandbox.lock:
            sandbox.world.move(DEMO_PROJECT_ID, item_id, state, sandbox.human_key or "")

    def board(self) -> list[tuple[str, str, str]]:
        sandbox = self.plane.sandbox
        with sandbox.lock:
            project = sandbox.world.projects[DEMO_PROJECT_ID]
            return [
                (f"DEMO-{i.sequence_id}", i.name, project.states[i.state_id].name)
                for i in sorted(project.items.values(), key=lambda i: i.sequence_id)
            ]


def run(*, timeout_s: float = 180, keep_running: bool = False, out: Any = None) -> int:
    out = out or sys.stdout

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="planeflow-demo-"))
    demo = Demo(workdir)
    if threading.current_thread() is threading.main_thread():
        # SIGTERM stops the demo like Ctrl-C: its redis-server child is stopped too
        signal.signal(signal.SIGTERM, _terminated)
    try:
        demo.start()
        say("planeflow embedded demo")
        say(f"  redis:  {demo.redis.url} — {demo.redis.kind}")
        say(f"  plane:  {demo.plane.url} (sandbox; workspace acme, project DEMO)")
        say(f"  web:    {demo.web_url} (webhooks, /healthz, /readyz, /metrics)")
        say(f"  board:  {demo.web_url}/ (the dashboard, live)")
        say(f"  forge:  {demo.registry.projects['demo'].repo} (local bare git repo)")
        say(f"  files:  {workdir}")
        return drive(demo, say, timeout_s, keep_running)
    finally:
        demo.stop()
        if not keep_running:
            shutil.rmtree(workdir, ignore_errors=True)


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def report(demo: Demo, say: Any, task: Any) -> None:
    """The board, the task's timeline and the forge's main branch, once it is over."""
    say("\nBoard (Plane):")
    for key, name, state in demo.board():
        say(f"  {key:<8} {state:<16} {name}")
    if task is None:
        return
    say(f"\nTimeline of {task.work_item_id} (redis-cli XRANGE pf:task:{task.id}:log - +):")
    for entry in demo.services.store.timeline(task.id):
        say(f"  {entry['ts'][11:19]}  {entry['kind']:<10} {entry['message'][:110]}")
    log_lines = subprocess.run(
        ["git", "-C", str(demo.registry.projects["demo"].repo), "log", "--oneline", "main"],
        capture_output=True,
        text=True,
    ).stdout
    say("\nForge main branch:\n  " + "\n  ".join(log_lines.splitlines()))


def drive(demo: Demo, say: Any, timeout_s: float, keep_running: bool) -> int:
    item_id = next(iter(demo.plane.sandbox.world.projects[DEMO_PROJECT_ID].items))
    store = demo.services.store
    say("\nA human moves DEMO-1 to 'To Analyse' in Plane…")
    demo.move(item_id, "To Analyse")
    started, last, approved = time.monotonic(), None, False
    while time.monotonic() - started < timeout_s:
        task = store.get_task_by_issue(item_id)
        if task is not None:
            plane_state = dict((k, s) for k, _, s in demo.board())[task.work_item_id]
            if (task.stage, plane_state) != last:
                last = (task.stage, plane_state)
                say(
                    f"  +{time.monotonic() - started:5.1f}s  {task.work_item_id}  stage "
                    f"{task.stage.value:<16} Plane: {plane_state}"
                )
            idle = store.active_job(task) is None
            shown = task.status_key == STAGE_STATUS_KEY[task.stage] and task.status_sync_ok
            if task.stage is Stage.REVIEW and idle and task.pr_url and shown and not approved:
                approved = True
                say(f"  PR: {task.pr_url}\n  The human reviews it and moves DEMO-1 to 'Approved'…")
                demo.move(item_id, "Approved")
            if task.stage is Stage.DONE or (task.stage is Stage.BLOCKED and idle):
                break
        time.sleep(0.2)
    task = store.get_task_by_issue(item_id)
    deadline = time.monotonic() + 10  # let the last status write land before the board
    while task is not None and task.status_key != STAGE_STATUS_KEY[task.stage]:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
        task = store.get_task_by_issue(item_id)
    report(demo, say, task)
    ok = task is not None and task.stage is Stage.DONE
    name = task.work_item_id if task else "DEMO-1"
    where = (
        "travelled analysis → done"
        if ok
        else (f"stopped at {task.stage.value}" if task else "never started")
    )
    say(f"\n{'DONE' if ok else 'NOT DONE'}: {name} {where} in {time.monotonic() - started:.1f}s.")
    if keep_running:
        say(
            f"\nStill running (Ctrl-C to stop). Open {demo.web_url}/ for the dashboard, or "
            f"try: planeflow tasks --watch, with ORCH_REDIS_URL={demo.redis.url}"
        )
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0 if ok else 1
