"""The handlers (start / verdict / cancel) and event routing, on the sandbox Plane."""

from __future__ import annotations

import pytest

from app.domain.models import JobState
from app.domain.results import Handled, Result
from app.domain.stages import Stage
from app.plane.models import WorkItem
from app.sandbox.plane_runner import SandboxPlaneRunner
from app.sandbox.plane_world import Item
from app.services import Services
from tests.helpers import demo_project, first_item, flush_outbox, move


def jobs_queued(services: Services) -> int:
    return int(services.store.r.llen("dramatiq:jobs"))


def current(services: Services, item: Item) -> WorkItem:
    project = services.registry.projects["demo"]
    return services.plane.get_work_item(project.plane_project_id, item.id)


def route(services: Services, item: Item, state: str, runner: SandboxPlaneRunner) -> Result:
    move(runner, item, state)
    decision = services.events.route(
        current(services, item), services.registry.projects["demo"], source="test"
    )
    flush_outbox(services)  # the Plane writes it decided (a worker's flush_outbox)
    return decision


def test_start_creates_task_status_and_first_job(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = first_item(sandbox_plane)
    assert route(services, item, "To Analyse", sandbox_plane) == Result(
        Handled.STARTED, stage=Stage.ANALYSIS
    )
    task = services.store.get_task_by_issue(item.id)
    assert task is not None and task.stage is Stage.ANALYSIS
    assert task.work_item_id == f"DEMO-{item.sequence_id}"
    assert task.branch == f"feature/DEMO-{item.sequence_id}-demo-work-item-1"
    assert jobs_queued(services) == 1
    job = services.store.active_job(task)
    assert job is not None and job.stage is Stage.ANALYSIS and job.state is JobState.QUEUED
    # Layer B: the board now says Analysis, written by our bot
    assert sandbox_plane.sandbox.world.state_history(item.id)[-1] == "Analysis"


def test_second_start_is_ignored_with_reason(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = first_item(sandbox_plane)
    route(services, item, "To Analyse", sandbox_plane)
    second = route(services, item, "In Progress", sandbox_plane)
    assert second.kind is Handled.IGNORED and second.detail.startswith("task already running")
    assert jobs_queued(services) == 1
    task = services.store.get_task_by_issue(item.id)
    assert task is not None
    assert "ignored: task already running" in services.store.timeline(task.id)[-1]["message"]


def test_start_resumes_a_blocked_task_at_the_failed_stage(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = first_item(sandbox_plane)
    route(services, item, "To Analyse", sandbox_plane)
    store = services.store
    task = store.get_task_by_issue(item.id)
    assert task is not None and task.active_job_id
    store.finish_job(task.active_job_id, "failure")
    store.move_task(task.id, Stage.BLOCKED, "agent failed", failed_stage=Stage.DEVELOPMENT)
    resumed = route(services, item, "To Analyse", sandbox_plane)
    assert (resumed.kind, resumed.stage) == (Handled.RESUMED, Stage.DEVELOPMENT)
    resumed = store.get_task(task.id)
    assert resumed is not None and resumed.stage is Stage.DEVELOPMENT
    assert jobs_queued(services) == 2


def in_review(services: Services, runner: SandboxPlaneRunner) -> tuple[Item, str]:
    item = first_item(runner)
    route(services, item, "To Analyse", runner)
    store = services.store
    task = store.get_task_by_issue(item.id)
    assert task is not None and task.active_job_id
    store.finish_job(task.active_job_id, "success")
    store.move_task(task.id, Stage.REVIEW, "gates passed")
    return item, task.id


def test_verdict_for_task_not_in_review_is_ignored(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = first_item(sandbox_plane)
    route(services, item, "To Analyse", sandbox_plane)
    decision = route(services, item, "Approved", sandbox_plane)
    assert decision == Result(
        Handled.IGNORED, "verdict approved for task not in review (stage analysis)"
    )
    task = services.store.get_task_by_issue(item.id)
    assert task is not None and task.stage is Stage.ANALYSIS
    assert str(decision) in services.store.timeline(task.id)[-1]["message"]


def test_approved_verdict_moves_review_to_merge(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    item, task_id = in_review(services, sandbox_plane)
    approved = route(services, item, "Approved", sandbox_plane)
    assert (approved.kind, approved.stage) == (Handled.MOVED, Stage.MERGE)
    task = services.store.get_task(task_id)
    assert task is not None and task.stage is Stage.MERGE
    assert jobs_queued(services) == 2
    # a replay of the same verdict changes nothing
    again = route(services, item, "Approved", sandbox_plane)
    assert again.kind is Handled.IGNORED
    assert again.detail.startswith("verdict approved for task not in review")


def test_rejected_verdict_goes_back_to_development_with_comments(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    item, task_id = in_review(services, sandbox_plane)
    world = sandbox_plane.sandbox.world
    project = demo_project(sandbox_plane)
    with sandbox_plane.sandbox.lock:
        human = world.user_for_key(sandbox_plane.sandbox.human_key or "")
        world.add_comment(
            project,
            project.items[item.id],
            {"comment_html": "<p>Please handle the empty list.</p>"},
            human,
        )
    rejected = route(services, item, "Rejected", sandbox_plane)
    assert (rejected.kind, rejected.stage) == (Handled.MOVED, Stage.DEVELOPMENT)
    task = services.store.get_task(task_id)
    assert task is not None and task.stage is Stage.DEVELOPMENT
    assert task.feedback == "Please handle the empty list."
    assert task.rework_count == 1


def test_verdict_while_a_job_is_active_is_ignored(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    item, task_id = in_review(services, sandbox_plane)
    services.store.create_job(task_id, Stage.REVIEW)  # the reviewer agent is running
    early = route(services, item, "Approved", sandbox_plane)
    assert early.kind is Handled.IGNORED and "while job" in early.detail


def test_cancel_stops_the_task_and_its_job(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = first_item(sandbox_plane)
    route(services, item, "To Analyse", sandbox_plane)
    task = services.store.get_task_by_issue(item.id)
    assert task is not None and task.active_job_id
    job_id = task.active_job_id
    assert route(services, item, "Cancelled", sandbox_plane).kind is Handled.CANCELLED
    job = services.store.get_job(job_id)
    assert job is not None and job.state is JobState.CANCELLED
    task = services.store.get_task(task.id)
    assert task is not None and task.stage is Stage.CANCELLED
    assert route(services, item, "To Analyse", sandbox_plane) == Result(
        Handled.IGNORED, "task already cancelled"
    )


def test_echo_of_own_write_changes_nothing(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = first_item(sandbox_plane)
    route(services, item, "To Analyse", sandbox_plane)
    bot = services.pipeline.own_user_id
    assert bot is not None
    decision = services.events.process(
        {
            "project_id": demo_project(sandbox_plane).id,
            "issue_id": item.id,
            "actor_id": bot,
            "event_id": "1-0",
        }
    )
    assert decision == Result(Handled.IGNORED, "echo of own status write")
    task = services.store.get_task_by_issue(item.id)
    assert task is not None
    assert "echo of own status write" in services.store.timeline(task.id)[-1]["message"]


def test_stale_event_reads_the_current_state(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = first_item(sandbox_plane)
    move(sandbox_plane, item, "To Analyse")
    move(sandbox_plane, item, "Backlog")  # the human changed their mind
    decision = services.events.process(
        {
            "project_id": demo_project(sandbox_plane).id,
            "issue_id": item.id,
            "actor_id": "human",
            "event_id": "1-0",
        }
    )
    assert decision == Result(Handled.IGNORED, "state 'Backlog' is not a trigger")
    assert services.store.get_task_by_issue(item.id) is None


def test_replay_runs_stored_events_through_the_same_handlers(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    from app.events import replay

    item = first_item(sandbox_plane)
    move(sandbox_plane, item, "To Analyse")
    keys = services.store.keys
    services.store.r.xadd(
        keys.events,
        {
            "source": "plane",
            "event": "issue",
            "project": "demo",
            "issue": item.id,
            "actor": "human",
            "outcome": "process",
        },
    )
    services.store.r.xadd(
        keys.events,
        {
            "source": "plane",
            "event": "issue",
            "project": "gone",
            "issue": "x",
            "actor": "human",
            "outcome": "process",
        },
    )
    first = replay(services.store, services.registry, services.events, since="-")
    assert [str(d) for _, d in first] == ["started", "ignored: project 'gone' unknown"]
    again = replay(services.store, services.registry, services.events, event_id=first[0][0])
    assert again[0][1].kind is Handled.IGNORED  # idempotent by construction
    assert len(services.store.list_tasks()) == 1


@pytest.mark.parametrize(
    "issue_id",
    ["../../../../../users/me", "../../other/work-items/x", "1ab9770d-8f54-4954-a3c2\x00"],
)
def test_invalid_work_item_id_is_ignored_without_a_plane_call(
    services: Services, sandbox_plane: SandboxPlaneRunner, issue_id: str
) -> None:
    project = services.registry.projects["demo"]
    processor = services.events  # built first: it asks Plane for our own user once
    before = len(sandbox_plane.sandbox.request_log)
    decision = processor.process(
        {"project_id": project.plane_project_id, "issue_id": issue_id, "event_id": "1-0"}
    )
    assert decision.kind is Handled.IGNORED  # returned, not raised: no retry
    assert decision.detail.startswith("work item id")
    assert len(sandbox_plane.sandbox.request_log) == before


def test_path_segments_are_quoted(services: Services, sandbox_plane: SandboxPlaneRunner) -> None:
    from app.domain.errors import PlaneError

    project = services.registry.projects["demo"]
    with pytest.raises(PlaneError) as err:
        services.plane.get_work_item(project.plane_project_id, "../../../../../users/me")
    assert err.value.status == 404 and not err.value.retryable
    # the id stayed one segment: the request reached the work-item route, not users/me
    _, path = sandbox_plane.sandbox.request_log[-1]
    assert path.startswith(
        f"/api/v1/workspaces/acme/projects/{project.plane_project_id}/work-items/"
    )
    with pytest.raises(PlaneError) as dots:
        services.plane.get_work_item(project.plane_project_id, "..")
    assert not dots.value.retryable and sandbox_plane.sandbox.request_log[-1][1] == path


def test_starting_an_event_clears_its_fold_marker(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = first_item(sandbox_plane)
    store = services.store
    store.r.set(store.keys.fold(item.id), "5-0|0")
    project = services.registry.projects["demo"]
    services.events.process(
        {"project_id": project.plane_project_id, "issue_id": item.id, "event_id": "4-0"}
    )
    assert store.r.get(store.keys.fold(item.id)) == "5-0|0"  # a newer event's marker stays
    services.events.process(
        {"project_id": project.plane_project_id, "issue_id": item.id, "event_id": "5-0"}
    )
    assert store.r.get(store.keys.fold(item.id)) is None
