"""A work item deleted in Plane (no webhook): its task is cancelled, carefully."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from app.domain.models import JobState, utcnow
from app.domain.stages import Stage
from app.sandbox.plane_runner import SandboxPlaneRunner
from app.services import Services
from tests.helpers import demo_project, flush_outbox, start_first_item
from tests.integration.conftest import MakeServices


@pytest.fixture
def services(make_services: MakeServices) -> Services:
    return make_services(plane_retries=0)


class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


def analysing_task(services: Services, runner: SandboxPlaneRunner) -> Any:
    """A task in analysis whose agent is running, last seen in Plane long ago."""
    task = start_first_item(services, runner)
    services.store.update_job(task.active_job_id, state=JobState.RUNNING, heartbeat_at=utcnow())
    services.store.update_task(task.id, touch=False, seen_at=utcnow() - timedelta(hours=1))
    return services.store.get_task(task.id)


def delete(runner: SandboxPlaneRunner, task: Any) -> None:
    world = runner.sandbox.world
    project = demo_project(runner)
    with runner.sandbox.lock:
        world.delete_item(project, project.items[task.plane_issue_id])


def not_listed(services: Services, runner: SandboxPlaneRunner, task: Any) -> None:
    """Incremental passes from now on, no rolling page due, and the item untouched for an
    hour: not listed."""
    runner.sandbox.world.backdate(demo_project(runner).id, task.plane_issue_id, 3600)
    key = services.store.keys.reconcile_state("demo")
    services.store.r.hset(
        key,
        mapping={"watermark": utcnow().isoformat(), "passes": 1, "rolling_next_at": 4e9},
    )


def a_pass(services: Services, clock: Clock) -> Any:
    services.reconciler.clock = clock
    return services.reconciler.reconcile_project(services.registry.projects["demo"])


def test_deleted_item_is_cancelled_by_two_404s_60s_apart(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = analysing_task(services, sandbox_plane)
    services.outbox.comment(task.id, "<p>not sent: the item is gone</p>")
    delete(sandbox_plane, task)
    clock = Clock()
    first = a_pass(services, clock)
    assert (first.items_checked, first.deleted) == (1, 0)
    assert services.store.get_task(task.id).stage is Stage.ANALYSIS  # one 404 is a suspicion
    next_due = float(services.store.r.hget(services.store.keys.reconcile_state("demo"), "next_due"))
    assert next_due >= clock.t + 60  # the confirming pass is at least 60 s later
    clock.t += 30
    assert a_pass(services, clock).deleted == 0  # too soon
    clock.t += 31
    second = a_pass(services, clock)
    assert second.deleted == 1
    cancelled = services.store.get_task(task.id)
    assert cancelled.stage is Stage.CANCELLED
    job = services.store.get_job(task.active_job_id)
    assert job.state is JobState.CANCELLED  # its runner kills the agent within a heartbeat
    transitions = [e["message"] for e in services.store.timeline(task.id)]
    assert any(
        "analysis -> cancelled: work item deleted in Plane (404 at" in m for m in transitions
    )
    # no further Plane writes for it
    assert services.outbox_store.is_settled(task.id)
    before = len(sandbox_plane.sandbox.request_log)
    flush_outbox(services)
    services.outbox.show_stage(task.id)
    services.flusher.flush(task.id)
    assert len(sandbox_plane.sandbox.request_log) == before


def test_an_item_found_again_is_not_cancelled(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = analysing_task(services, sandbox_plane)
    not_listed(services, sandbox_plane, task)
    sandbox_plane.sandbox.faults[task.plane_issue_id] = "404"  # a Plane hiccup, once
    clock = Clock()
    assert a_pass(services, clock).items_checked == 1
    assert services.store.get_task(task.id).missing_since is not None
    sandbox_plane.sandbox.faults.clear()
    clock.t += 61
    assert a_pass(services, clock).deleted == 0
    found = services.store.get_task(task.id)
    assert found.stage is Stage.ANALYSIS and found.missing_since is None


def test_nothing_is_concluded_when_plane_fails_as_a_whole(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = analysing_task(services, sandbox_plane)
    delete(sandbox_plane, task)
    sandbox_plane.sandbox.faults["*"] = "500"  # a restarted or broken Plane
    clock = Clock()
    for _ in range(3):
        report = a_pass(services, clock)
        assert report.error and report.items_checked == 0
        clock.t += 61
    assert services.store.get_task(task.id).missing_since is None


def test_item_checks_stay_within_their_share(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = analysing_task(services, sandbox_plane)
    not_listed(services, sandbox_plane, task)
    clock = Clock()
    assert a_pass(services, clock).items_checked == 1
    assert services.store.get_task(task.id).seen_at is not None
    assert a_pass(services, clock).items_checked == 0  # seen just now: not again
