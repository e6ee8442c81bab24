"""The whole stack for end-to-end tests: the receiver (with the dashboard), a real
Dramatiq worker on real Redis, the sandbox Plane sending webhooks, a local bare git
repo as the forge and the sample agents; `Stack` waits on what a task does."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from actors.worker import start_worker
from app.domain.stages import Stage
from app.plane.status import STAGE_STATUS_KEY
from app.projects import Registry
from app.sandbox.plane_runner import JOURNEY, SandboxPlaneRunner
from app.sandbox.plane_world import Item
from app.services import Services
from app.web import create_app
from tests.conftest import RedisServer
from tests.e2e.conftest import wait_for
from tests.helpers import (
    SECRET,
    ServedApp,
    demo_project,
    make_remote,
    pipeline_project,
    settings,
)

FULL_JOURNEY = ["Backlog", *JOURNEY]


class Stack:
    def __init__(self, services: Services, runner: SandboxPlaneRunner, remote: Path) -> None:
        self.services = services
        self.runner = runner
        self.remote = remote
        self.web_url = ""

    def task(self, item: Item) -> Any:
        return self.services.store.get_task_by_issue(item.id)

    def wait_stage(
        self, item: Item, stage: Stage, timeout: float = 60, *, rework_count: int | None = None
    ) -> Any:
        """The task once it is in `stage`, its status synced, its job done, its comments out."""

        def reached() -> Any:
            task = self.task(item)
            if task is None or task.stage is not stage:
                return None
            if rework_count is not None and task.rework_count != rework_count:
                return None
            if task.status_key != STAGE_STATUS_KEY[stage] or not self.settled(task):
                return None
            return task if self.services.store.active_job(task) is None else None

        try:
            return wait_for(reached, timeout, f"stage {stage.value}")
        except AssertionError:
            task = self.task(item)
            timeline = self.services.store.timeline(task.id) if task else []
            raise AssertionError(
                f"never reached {stage.value}; now "
                f"{task.stage.value if task else None}; timeline: "
                f"{[e['message'] for e in timeline]}"
            ) from None

    def settled(self, task: Any) -> bool:
        """Plane has been told everything: the task's outbox is empty."""
        return self.services.outbox_store.is_settled(task.id)

    def comments_of(self, issue_id: str) -> list[str]:
        project = demo_project(self.runner)
        with self.runner.sandbox.lock:
            return [c.comment_html for c in project.comments.get(issue_id, [])]

    def comments(self, item: Item) -> list[str]:
        project = demo_project(self.runner)
        with self.runner.sandbox.lock:
            return [c.comment_html for c in project.comments.get(item.id, [])]

    def remote_file(self, path: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.remote), "show", f"main:{path}"], capture_output=True, text=True
        ).stdout

    def describe(self, item: Item, text: str) -> None:
        with self.runner.sandbox.lock:
            demo_project(self.runner).items[item.id].description_html = f"<p>{text}</p>"


def make_stack(
    tmp_path: Path,
    redis_server: RedisServer,
    runner: SandboxPlaneRunner,
    settings_overrides: dict[str, Any] | None = None,
    **project_overrides: Any,
) -> Iterator[Stack]:
    remote = make_remote(tmp_path)
    health = project_overrides.pop("health_url", runner.base_url + "/_sandbox/info")
    registry = Registry.model_validate(
        {"projects": {"demo": pipeline_project(remote, health, **project_overrides)}}
    )
    cfg = settings(
        tmp_path,
        redis_url=redis_server.url,
        plane_url=runner.base_url,
        plane_rate_per_min=100_000,
        job_retry_base_s=0.1,
        cap_wait_s=0.2,
        **(settings_overrides or {}),
    )
    services = Services(cfg, registry_override=registry)
    worker, services = start_worker(
        cfg, threads=4, services=services, client=redis.Redis.from_url(cfg.redis_url)
    )
    web = ServedApp(create_app(cfg, registry=registry, redis_client=services.store.r))
    runner.sandbox.sender.configure(web.url + "/webhooks/plane", SECRET)
    try:
        stack = Stack(services, runner, remote)
        stack.web_url = web.url
        yield stack
    finally:
        runner.sandbox.sender.configure(None)
        web.stop()
        worker.stop(timeout=15_000)
        worker.broker.close()
        services.close()
