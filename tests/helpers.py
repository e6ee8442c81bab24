"""Shared test helpers: signed Plane deliveries, settings and registries for the sandbox."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from app.config import Settings
from app.plane.webhooks import signature
from app.projects import Registry, registry_toml
from app.sandbox.plane_render import render_comment, render_item_webhook
from app.sandbox.plane_runner import BOT_KEY, DEMO_PROJECT_ID, SandboxPlaneRunner
from app.sandbox.plane_world import Item, Project
from app.sandbox.serve import ThreadedServer
from tests.conftest import FIXTURES

SECRET = "test-webhook-secret"
FIXTURE_SECRET = "plane_wh_fedcba9876543210fedcba9876543210"
ORCH_ID = "18c1fbbe-60b8-4f30-9f83-c0398a578ce3"


def fixture_delivery(name: str) -> tuple[bytes, dict[str, str]]:
    """A recorded real Plane delivery: raw body bytes and its headers."""
    data = json.loads((FIXTURES / f"{name}.json").read_text())["delivery"]
    headers = {k: v for k, v in data["headers"] if k.startswith("X-Plane")}
    return data["raw_body"].encode("utf-8"), headers


def registry(demo_id: str = DEMO_PROJECT_ID, **extra: dict[str, Any]) -> Registry:
    projects: dict[str, Any] = {
        "demo": {
            "plane_project_id": demo_id,
            "repo": "demo-repo",
            "work_item_prefix": "DEMO",
            "max_rework": 2,
        },
        "orch": {
            "plane_project_id": ORCH_ID,
            "repo": "orch-repo",
            "work_item_prefix": "ORCH",
            "webhook_secret": FIXTURE_SECRET,
        },
    }
    projects.update(extra)
    return Registry.model_validate({"projects": projects})


def settings(
    tmp_path: Path,
    *,
    redis_url: str = "redis://127.0.0.1:1/0",
    plane_url: str = "http://127.0.0.1:1",
    **overrides: Any,
) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "plane_base_url": plane_url,
        "plane_api_token": SecretStr(BOT_KEY),
        "plane_webhook_secret": SecretStr(SECRET),
        "spool_dir": tmp_path / "spool",
        "repos_dir": tmp_path / "repos",
        "projects_file": tmp_path / "projects.toml",
        "lock_wait_s": 20.0,
    }
    values.update(overrides)
    return Settings.model_construct(**{**Settings().model_dump(), **values})


def plane_delivery(
    runner: SandboxPlaneRunner,
    project: Project,
    item: Item,
    *,
    field: str | None = "state",
    actor_id: str = "human",
    nonce: str = "",
) -> tuple[bytes, dict[str, str]]:
    """A signed delivery for a sandbox item, in real Plane's layout."""
    world = runner.sandbox.world
    with runner.sandbox.lock:
        data = render_item_webhook(world, project, item)
    body = {
        "event": "issue",
        "action": "updated",
        "webhook_id": "wh-test" + nonce,
        "workspace_id": world.workspace_id,
        "data": data,
        "activity": {
            "field": field,
            "new_value": item.state_id,
            "old_value": None,
            "actor": {"id": actor_id, "display_name": "x"},
            "old_identifier": None,
            "new_identifier": None,
        },
    }
    raw = json.dumps(body).encode()
    return raw, {
        "X-Plane-Event": "issue",
        "X-Plane-Delivery": "d-" + nonce,
        "X-Plane-Signature": signature(SECRET, raw),
        "Content-Type": "application/json",
    }


def demo_project(runner: SandboxPlaneRunner) -> Project:
    return runner.sandbox.world.projects[DEMO_PROJECT_ID]


def move(runner: SandboxPlaneRunner, item: Item, state: str) -> None:
    """A human moves the card in the web app (the sandbox sends its webhook, if set)."""
    with runner.sandbox.lock:
        runner.sandbox.world.move(DEMO_PROJECT_ID, item.id, state, runner.sandbox.human_key or "")


def first_item(runner: SandboxPlaneRunner) -> Item:
    return next(iter(demo_project(runner).items.values()))


class ServedApp(ThreadedServer):
    """An aiohttp app on a real loopback port, served from a thread (for webhooks in)."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.start()


def make_remote(path: Path) -> Path:
    """A bare git repo with one commit on main: the project's 'forge'."""
    import subprocess

    remote = path / "remote.git"
    seed = path / "seed"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(remote)], check=True)
    subprocess.run(["git", "init", "--quiet", "-b", "main", str(seed)], check=True)
    (seed / "README.md").write_text("# demo\n")
    ident = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", *ident, "-C", str(seed), "add", "-A"], check=True)
    subprocess.run(["git", *ident, "-C", str(seed), "commit", "--quiet", "-m", "init"], check=True)
    subprocess.run(["git", "-C", str(seed), "push", "--quiet", str(remote), "main"], check=True)
    return remote


def pipeline_project(remote: Path, health_url: str, **overrides: Any) -> dict[str, Any]:
    """Registry entry of the DEMO project wired to the sample agents and gate."""
    import sys

    from tests.conftest import REPO_ROOT

    agents = REPO_ROOT / "examples" / "agents"
    project: dict[str, Any] = {
        "plane_project_id": DEMO_PROJECT_ID,
        "repo": str(remote),
        "work_item_prefix": "DEMO",
        "forge": "git",
        "default_branch": "main",
        "max_rework": 2,
        "agents": {
            role: {
                "argv": [sys.executable, str(agents / f"{script}.py")],
                "time_limit_s": 60,
                "max_attempts": 2,
            }
            for role, script in (
                ("analyst", "analyst"),
                ("developer", "developer"),
                ("reviewer", "reviewer"),
            )
        },
        "gates": [
            {
                "name": "flag",
                "argv": [sys.executable, str(REPO_ROOT / "examples" / "gates" / "check_flag.py")],
                "timeout_s": 60,
            }
        ],
        "deploy": [sys.executable, "-c", "print('deployed')"],
        "health_url": health_url,
        "health_window_s": 1.0,
        "health_interval_s": 0.3,
    }
    project.update(overrides)
    return project


def write_registry(path: Path, projects: dict[str, dict[str, Any]]) -> Path:
    """A registry file for processes started by a test."""
    path.write_text(registry_toml(projects))
    return path


def flush_outbox(services: Any) -> int:
    """What a worker's `flush_outbox` actor would do now: send every task's Plane writes."""
    import time

    due = services.outbox_store.due(time.time() + 3600)
    for task_id in due:
        services.flusher.flush(task_id)
    return len(due)


def start_first_item(services: Any, runner: SandboxPlaneRunner) -> Any:
    """A human moves the demo's first item to To Analyse; the handler starts its task
    (reading the item from Plane) and the outbox flushes. Returns the task."""
    item = first_item(runner)
    move(runner, item, "To Analyse")
    project = services.registry.projects["demo"]
    services.events.route(
        services.plane.get_work_item(project.plane_project_id, item.id), project, source="test"
    )
    flush_outbox(services)
    return services.store.get_task_by_issue(item.id)


def comment_delivery(
    runner: SandboxPlaneRunner, item: Item, html: str, api_key: str
) -> tuple[bytes, dict[str, str]]:
    """A person (the user of `api_key`) comments on a sandbox item: the comment is in
    the sandbox, and this is its signed `issue_comment` delivery in real Plane's layout."""
    world = runner.sandbox.world
    with runner.sandbox.lock:
        project = demo_project(runner)
        user = world.user_for_key(api_key)
        comment = world.add_comment(project, item, {"comment_html": html}, user)
        data = render_comment(world, project, comment)
    body = {
        "event": "issue_comment",
        "action": "created",
        "webhook_id": "wh-test",
        "workspace_id": world.workspace_id,
        "data": data,
        "activity": {
            "field": None,
            "new_value": None,
            "old_value": None,
            "actor": user.render(),
            "old_identifier": None,
            "new_identifier": None,
        },
    }
    raw = json.dumps(body).encode()
    return raw, {
        "X-Plane-Event": "issue_comment",
        "X-Plane-Delivery": "d-" + comment.id,
        "X-Plane-Signature": signature(SECRET, raw),
        "Content-Type": "application/json",
    }


def stored_comment(services: Any, runner: SandboxPlaneRunner, item: Item, html: str,
                   api_key: str) -> str:
    """The comment as the receiver stores it in `pf:events`; returns the event id."""
    raw, _ = comment_delivery(runner, item, html, api_key)
    fields = {"source": "plane", "event": "issue_comment", "issue": item.id, "body": raw}
    return str(services.store.r.xadd(services.settings.keys.events, fields))


def comments_on(runner: SandboxPlaneRunner, item: Item) -> list[Any]:
    """The sandbox's comments on an item, oldest first."""
    with runner.sandbox.lock:
        return list(demo_project(runner).comments.get(item.id, []))
