"""JobRunner rules, driven directly: at-least-once safety, cancellation, budgets, resume."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from app.domain.models import JobState
from app.domain.results import Handled, Result
from app.domain.stages import Stage
from app.projects import Registry
from app.queue import make_redis_broker
from app.sandbox.plane_runner import SandboxPlaneRunner
from app.services import Services
from tests.helpers import first_item, make_remote, pipeline_project, settings

FAILS_IF_RUN = ["false"]


def make_services(
    tmp_path: Path,
    runner: SandboxPlaneRunner,
    fake_redis: Any,
    fake_server: fakeredis.FakeServer,
    **overrides: Any,
) -> Services:
    remote = make_remote(tmp_path)
    project = pipeline_project(remote, runner.base_url + "/_sandbox/info", **overrides)
    registry = Registry.model_validate({"projects": {"demo": project}})
    broker = make_redis_broker(client=fakeredis.FakeRedis(server=fake_server))
    return Services(
        settings(tmp_path, plane_url=runner.base_url, plane_rate_per_min=100_000),
        redis=fake_redis,
        registry_override=registry,
        broker=broker,
    )


@pytest.fixture
def services(
    tmp_path: Path,
    sandbox_plane: SandboxPlaneRunner,
    fake_redis: Any,
    fake_server: fakeredis.FakeServer,
    request: pytest.FixtureRequest,
) -> Iterator[Services]:
    overrides = getattr(request, "param", {})
    svc = make_services(tmp_path, sandbox_plane, fake_redis, fake_server, **overrides)
    yield svc
    svc.close()


def task_in(services: Services, runner: SandboxPlaneRunner, stage: Stage) -> Any:
    item = first_item(runner)
    task, _ = services.store.create_task_atomic(
        item.id, "DEMO-1", "demo-repo", "feature/DEMO-1-x", Stage.ANALYSIS, "x", project="demo"
    )
    if stage is not Stage.ANALYSIS:
        task = services.store.move_task(task.id, stage, "test set-up")
    return task


@pytest.mark.parametrize(
    "services", [{"agents": {"developer": {"argv": FAILS_IF_RUN}}}], indirect=True
)
def test_an_agent_that_already_finished_is_not_run_again(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = task_in(services, sandbox_plane, Stage.DEVELOPMENT)
    job = services.store.create_job(task.id, Stage.DEVELOPMENT)
    # the worker died after the agent exited 0 and before the outcome was recorded
    recorded = {
        "exit_code": 0,
        "timed_out": False,
        "cancelled": False,
        "output": "done before the crash",
        "duration_s": 1.0,
        "tokens": 0,
    }
    services.store.update_job(job.id, state=JobState.RUNNING, agent_result=json.dumps(recorded))
    decision = services.job_runner.run(job.id)  # the redelivered message
    assert (decision.kind, decision.stage) == (Handled.MOVED, Stage.QUALITY_GATE)
    messages = [e["message"] for e in services.store.timeline(task.id)]
    assert not any(m.startswith("developer exit") for m in messages)  # not run again
    assert services.job_runner.run(job.id).kind is Handled.IGNORED  # and never twice


def test_a_job_for_a_cancelled_task_is_not_started(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = task_in(services, sandbox_plane, Stage.ANALYSIS)
    job = services.store.create_job(task.id, Stage.ANALYSIS)
    services.store.move_task(task.id, Stage.CANCELLED, "cancelled in Plane")
    assert services.job_runner.run(job.id) == Result(Handled.STOPPED, "not started: task cancelled")
    assert services.store.get_job(job.id).state is JobState.CANCELLED


@pytest.mark.parametrize(
    "services", [{"self_hosting": True, "deploy": FAILS_IF_RUN}], indirect=True
)
def test_self_hosted_deploy_resumes_monitoring_after_the_restart(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    from app.domain.models import utcnow

    task = task_in(services, sandbox_plane, Stage.DEPLOYING)
    services.store.update_task(task.id, deploy_started_at=utcnow())  # recorded, then restart
    job = services.store.create_job(task.id, Stage.DEPLOYING)
    assert services.job_runner.run(job.id).stage is Stage.MONITORING


@pytest.mark.parametrize("services", [{"budget": {"attempts": 1}}], indirect=True)
def test_exhausted_budget_blocks_with_the_reason(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = task_in(services, sandbox_plane, Stage.DEVELOPMENT)
    services.store.update_task(task.id, attempts_used=1)  # spent on an earlier trigger
    job = services.store.create_job(task.id, Stage.DEVELOPMENT)
    ran = services.job_runner.run(job.id)
    assert ran.kind is Handled.BLOCKED and ran.detail.startswith("budget exhausted")
    blocked = services.store.get_task(task.id)
    assert blocked.stage is Stage.BLOCKED and blocked.failed_stage is Stage.DEVELOPMENT
    assert "1 agent attempts (limit 1)" in (blocked.blocked_reason or "")


def test_a_full_cap_makes_the_job_wait_visibly(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    services.settings.max_jobs = 1
    services.__dict__.pop("caps", None)
    services.__dict__.pop("job_runner", None)
    services.store.r.zadd(services.store.keys.slots("global"), {"other-job": 9e12})
    task = task_in(services, sandbox_plane, Stage.ANALYSIS)
    job = services.store.create_job(task.id, Stage.ANALYSIS)
    assert services.job_runner.run(job.id) == Result(Handled.WAITING, "for a slot")
    assert services.store.get_job(job.id).state is JobState.QUEUED
    last = services.store.timeline(task.id)[-1]
    assert last["message"] == "waiting for a slot: global cap of 1 running job(s)"
    services.store.r.zrem(services.store.keys.slots("global"), "other-job")
    assert services.job_runner.run(job.id).stage is Stage.DEVELOPMENT


@pytest.mark.parametrize("services", [{"budget": {"attempts": 1}}], indirect=True)
def test_a_task_blocked_in_monitoring_frees_the_deploy_slot_at_once(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = task_in(services, sandbox_plane, Stage.MONITORING)
    assert services.store.take_deploy_slot(task.repo, task.id, ttl_s=3600) is None
    services.store.update_task(task.id, attempts_used=1)  # budget used up
    job = services.store.create_job(task.id, Stage.MONITORING)
    assert services.job_runner.run(job.id).kind is Handled.BLOCKED
    # another task of the same repo can deploy now, not in 76 minutes
    assert services.store.take_deploy_slot(task.repo, "another-task", ttl_s=60) is None
    pending = services.outbox_store.pending(task.id)
    assert len(pending) == 1 and "Blocked in stage <b>monitoring</b>" in pending[0].html


@pytest.mark.parametrize("stage", [Stage.REVIEW, Stage.AWAITING_DEPLOY, Stage.MONITORING])
def test_a_job_lost_too_often_blocks_through_the_table_and_frees_the_slot(
    services: Services, sandbox_plane: SandboxPlaneRunner, stage: Stage
) -> None:
    from datetime import timedelta

    from app.domain.models import utcnow

    task = task_in(services, sandbox_plane, stage)
    services.store.take_deploy_slot(task.repo, task.id, ttl_s=3600)
    job = services.store.create_job(task.id, stage, attempt=3, time_limit_s=1)
    old = utcnow() - timedelta(hours=1)
    services.store.update_job(job.id, state=JobState.RUNNING, started_at=old, heartbeat_at=old)
    assert services.reconciler.sweep_jobs() == 1
    blocked = services.store.get_task(task.id)
    assert blocked.stage is Stage.BLOCKED and blocked.failed_stage is stage
    transitions = [e for e in services.store.timeline(task.id) if e["kind"] == "transition"]
    assert transitions[-1]["message"].startswith(f"{stage.value} -> blocked: job for")
    assert services.store.take_deploy_slot(task.repo, "another-task", ttl_s=60) is None
    assert len(services.outbox_store.pending(task.id)) == 1  # the blocked comment, kept


def test_a_finished_job_makes_no_plane_call_while_holding_its_slot(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = task_in(services, sandbox_plane, Stage.ANALYSIS)
    services.store.update_task(task.id, description="text known from the trigger")
    job = services.store.create_job(task.id, Stage.ANALYSIS)
    runner = services.job_runner  # built while Plane answers (it asks for our own user)
    sandbox_plane.sandbox.faults["*"] = "slow:30"  # Plane hangs
    before = len(sandbox_plane.sandbox.request_log)
    assert runner.run(job.id) == Result(Handled.MOVED, "analysis -> development", Stage.DEVELOPMENT)
    assert len(sandbox_plane.sandbox.request_log) == before  # statuses and comments wait
    assert services.store.r.zcard(services.store.keys.slots("global")) == 0  # slot free
    assert not services.outbox_store.is_settled(task.id)  # ... in the outbox
