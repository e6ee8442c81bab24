"""The Plane outbox: nothing meant for Plane is lost, doubled, reordered or stale."""

from __future__ import annotations

from typing import Any

import pytest

from app.domain.stages import Stage
from app.outbox import Flushed, OutboxFlusher
from app.plane.client import PlaneClient
from app.plane.ratelimit import Priority, RateBudget
from app.plane.status import StateResolver
from app.sandbox.plane_runner import BOT_KEY, SandboxPlaneRunner
from app.services import Services
from tests.conftest import free_port
from tests.helpers import demo_project, flush_outbox, start_first_item
from tests.integration.conftest import MakeServices


@pytest.fixture
def services(make_services: MakeServices) -> Services:
    return make_services(plane_rate_per_min=1000)


def started_task(services: Services, runner: SandboxPlaneRunner) -> Any:
    task = start_first_item(services, runner)
    services.store.finish_job(task.active_job_id, "success")
    return task


def history(runner: SandboxPlaneRunner, task: Any) -> list[str]:
    return runner.sandbox.world.state_history(task.plane_issue_id)


def comments(runner: SandboxPlaneRunner, task: Any) -> list[str]:
    with runner.sandbox.lock:
        return [c.comment_html for c in demo_project(runner).comments.get(task.plane_issue_id, [])]


def flusher_on(services: Services, client: PlaneClient) -> OutboxFlusher:
    return OutboxFlusher(
        services.store,
        services.outbox_store,
        client,
        client,
        StateResolver(client, services.store),
        services.registry,
        lambda task_id, delay: None,
    )


def test_every_stage_is_shown_in_order_when_the_budget_allows(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = started_task(services, sandbox_plane)
    for stage in (Stage.DEVELOPMENT, Stage.QUALITY_GATE, Stage.REVIEW):
        services.store.move_task(task.id, stage, "test")
    services.outbox.show_stage(task.id)
    assert services.flusher.flush(task.id).result is Flushed.DONE
    assert history(sandbox_plane, task)[-4:] == [
        "Analysis",
        "In Progress",
        "Quality Gate",
        "Code Review",
    ]
    assert services.outbox_store.is_settled(task.id)
    assert services.flusher.flush(task.id).status_written is False  # Plane shows it already


def test_under_congestion_only_the_latest_status_is_written(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = started_task(services, sandbox_plane)
    for stage in (Stage.DEVELOPMENT, Stage.QUALITY_GATE, Stage.REVIEW):
        services.store.move_task(task.id, stage, "test")
    services.outbox.show_stage(task.id)
    budget = RateBudget(services.client, "test:budget", per_minute=10)
    while budget.at(Priority.STATUS).try_acquire():
        pass  # the status share of the window is used up; the flusher's last write waits
    flusher = services.flusher
    flusher.statuses.status_budget_free = lambda project: 0  # type: ignore[method-assign]
    assert flusher.flush(task.id).result is Flushed.DONE
    assert history(sandbox_plane, task)[-2:] == ["Analysis", "Code Review"]


def test_comments_survive_a_refusing_plane_and_are_posted_once_in_order(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = started_task(services, sandbox_plane)
    for n in range(3):
        services.outbox.comment(task.id, f"<p>milestone {n}</p>")
    dead = PlaneClient(f"http://127.0.0.1:{free_port()}", BOT_KEY, "acme", retries=0)
    down = flusher_on(services, dead).flush(task.id)
    assert down.result is Flushed.RETRY
    assert [c.tries for c in services.outbox_store.pending(task.id)] == [1, 0, 0]
    services.store.move_task(task.id, Stage.DEVELOPMENT, "test")
    assert flusher_on(services, dead).flush(task.id).result is Flushed.RETRY  # status first
    assert not services.outbox_store.is_settled(task.id)
    assert services.flusher.flush(task.id).comments_posted == 3
    assert comments(sandbox_plane, task) == [f"<p>milestone {n}</p>" for n in range(3)]
    assert history(sandbox_plane, task)[-1] == "In Progress"
    assert services.outbox_store.is_settled(task.id)


def test_a_comment_whose_answer_was_lost_is_not_posted_twice(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = started_task(services, sandbox_plane)
    services.outbox.comment(task.id, "<p>analysis done</p>")
    sandbox_plane.sandbox.faults[task.plane_issue_id] = "lose_answer"
    once = PlaneClient(sandbox_plane.base_url, BOT_KEY, "acme", retries=0)
    assert flusher_on(services, once).flush(task.id).result is Flushed.RETRY  # 502
    assert services.flusher.flush(task.id).result is Flushed.DONE  # Plane: 409, it exists
    assert comments(sandbox_plane, task) == ["<p>analysis done</p>"]
    messages = [e["message"] for e in services.store.timeline(task.id)]
    assert any("already posted (Plane answered 409)" in m for m in messages)


def test_a_hung_plane_keeps_everything_for_later(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = started_task(services, sandbox_plane)
    services.outbox.comment(task.id, "<p>x</p>")
    sandbox_plane.sandbox.faults["*"] = "slow:2"
    slow = PlaneClient(sandbox_plane.base_url, BOT_KEY, "acme", retries=0, timeout_s=0.3)
    assert flusher_on(services, slow).flush(task.id).result is Flushed.RETRY
    sandbox_plane.sandbox.faults.clear()
    assert services.flusher.flush(task.id).comments_posted == 1


def test_a_comment_plane_refuses_for_good_is_recorded_not_retried(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = started_task(services, sandbox_plane)
    services.outbox.comment(task.id, "")  # Plane: 400 comment_html is required
    services.outbox.comment(task.id, "<p>next</p>")
    assert services.flusher.flush(task.id).result is Flushed.DONE
    assert comments(sandbox_plane, task) == ["<p>next</p>"]
    messages = [e["message"] for e in services.store.timeline(task.id)]
    assert any("refused by Plane, not retried" in m for m in messages)


def test_drift_repair_writes_the_stage_the_task_has_now(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = started_task(services, sandbox_plane)
    stale = services.store.get_task(task.id)  # what a reconcile pass would hold
    services.store.move_task(task.id, Stage.DEVELOPMENT, "test")
    services.store.move_task(task.id, Stage.QUALITY_GATE, "test")
    flush_outbox(services)
    assert stale is not None and stale.stage is Stage.ANALYSIS
    services.reconciler.outbox.show_stage(stale.id)  # the repair, from the stale copy
    services.store.update_task(task.id, status_sync_ok=False)
    flush_outbox(services)
    assert history(sandbox_plane, task)[-1] == "Quality Gate"
    assert "Analysis" not in history(sandbox_plane, task)[-2:]


def test_busy_flusher_asks_again_instead_of_dropping(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = started_task(services, sandbox_plane)
    asked: list[tuple[str, int | None]] = []
    flusher = services.flusher
    flusher.notify = lambda task_id, delay: asked.append((task_id, delay))
    lock = services.store.r.lock(services.store.keys.outbox_lock(task.id), timeout=10)
    assert lock.acquire(blocking=False)
    try:
        assert flusher.flush(task.id).result is Flushed.BUSY
    finally:
        lock.release()
    assert asked == [(task.id, 1000)]


def test_status_writes_wait_while_a_humans_move_is_pending(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = started_task(services, sandbox_plane)
    services.store.move_task(task.id, Stage.DEVELOPMENT, "test")
    store = services.store
    store.r.set(store.keys.fold(task.plane_issue_id), "7-0|0")  # a human's move, queued
    before = list(history(sandbox_plane, task))
    assert services.flusher.flush(task.id).result is Flushed.DEFERRED
    assert history(sandbox_plane, task) == before  # nothing written over the human's move
    store.r.set(store.keys.fold(task.plane_issue_id), "8-0|1")  # only our own echo queued
    assert services.flusher.flush(task.id).result is Flushed.DONE
    assert history(sandbox_plane, task)[-1] == "In Progress"


def test_a_humans_event_holds_the_outbox_while_it_is_handled(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = started_task(services, sandbox_plane)
    store = services.store
    seen: list[bool] = []
    real_route = services.events.route

    def route(*args: object, **kwargs: object) -> object:
        seen.append(store.human_move_pending(task.plane_issue_id))
        return real_route(*args, **kwargs)  # type: ignore[arg-type]

    services.events.route = route  # type: ignore[method-assign]
    project = services.registry.projects["demo"]
    services.events.process(
        {
            "project_id": project.plane_project_id,
            "issue_id": task.plane_issue_id,
            "actor_id": "human",
            "event_id": "9-0",
        }
    )
    assert seen == [True]  # held while the human's move was read and routed
    assert not store.human_move_pending(task.plane_issue_id)  # released after
