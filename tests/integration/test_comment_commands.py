"""Commands in Plane comments (`/planeflow retry|cancel|status|explain`), on the sandbox.

The comment is stored as the receiver stores it; the handler reads it, checks who wrote
it, acts and replies through the outbox (or the post_reply message for an item with no
task).
"""

from __future__ import annotations

import json

from app.commands import CommentCommands
from app.domain.models import JobState
from app.domain.results import Handled
from app.domain.stages import Stage
from app.sandbox.plane_runner import BOT_KEY, GUEST_KEY, HUMAN_KEY, SandboxPlaneRunner
from app.services import Services
from tests.helpers import (
    comments_on,
    first_item,
    flush_outbox,
    start_first_item,
    stored_comment,
)


def command(services: Services, runner: SandboxPlaneRunner, html: str, key: str = HUMAN_KEY):
    item = first_item(runner)
    event_id = stored_comment(services, runner, item, html, key)
    project = services.registry.projects["demo"]
    result = services.commands.handle(project, item.id, event_id)
    flush_outbox(services)
    return result


def replies(runner: SandboxPlaneRunner) -> list[str]:
    return [c.comment_html for c in comments_on(runner, first_item(runner)) if c.external_id]


def block(services: Services, task_id: str) -> None:
    task = services.store.get_task(task_id)
    assert task is not None and task.active_job_id
    services.store.finish_job(task.active_job_id, "failure")
    services.store.move_task(task_id, Stage.BLOCKED, "agent failed", failed_stage=Stage.DEVELOPMENT)


def test_retry_on_a_blocked_item_resumes_it_and_replies(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = start_first_item(services, sandbox_plane)
    block(services, task.id)
    result = command(services, sandbox_plane, "<p>/planeflow retry</p>")
    assert result.kind is Handled.ANSWERED
    now = services.store.get_task(task.id)
    assert now is not None and now.stage is Stage.DEVELOPMENT
    job = services.store.active_job(now)
    assert job is not None and job.stage is Stage.DEVELOPMENT and job.state is JobState.QUEUED
    messages = [e["message"] for e in services.store.timeline(task.id)]
    assert "blocked -> development: resumed by Plane comment by ada" in messages
    assert "retry by Plane comment by ada: resumed: at development" in messages
    (reply,) = replies(sandbox_plane)
    assert "resumed: at development" in reply
    audit = services.store.recent_actions()
    assert (audit[0]["action"], audit[0]["origin"]) == ("retry", "Plane comment by ada")


def test_status_replies_with_stage_job_and_last_decisions(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = start_first_item(services, sandbox_plane)
    command(services, sandbox_plane, "<p>Where is it?</p><p>/planeflow status</p>")
    (reply,) = replies(sandbox_plane)
    assert "stage <b>analysis</b>" in reply
    assert f"active job {task.active_job_id} (analysis, queued, attempt 1" in reply
    assert "last decisions:" in reply and "started by test" in reply
    assert not any(line.startswith("/planeflow") for line in reply.replace("<", "\n<").splitlines())


def test_explain_lists_every_decision(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    start_first_item(services, sandbox_plane)
    command(services, sandbox_plane, "<p>/planeflow explain</p>")
    (reply,) = replies(sandbox_plane)
    assert "decisions, oldest first:" in reply and "started by test" in reply


def test_an_unknown_command_is_answered_with_the_list(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    start_first_item(services, sandbox_plane)
    command(services, sandbox_plane, "<p>/planeflow frobnicate</p>")
    (reply,) = replies(sandbox_plane)
    assert "unknown command <code>frobnicate</code>" in reply
    for verb in ("retry", "cancel", "status", "explain"):
        assert f"<code>{verb}</code>" in reply


def test_cancel_stops_the_task_and_plane_shows_cancelled(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = start_first_item(services, sandbox_plane)
    command(services, sandbox_plane, "<p>/planeflow cancel</p>")
    now = services.store.get_task(task.id)
    assert now is not None and now.stage is Stage.CANCELLED
    job = services.store.get_job(task.active_job_id or "")
    assert job is not None and job.state is JobState.CANCELLED
    assert sandbox_plane.sandbox.world.state_history(first_item(sandbox_plane).id)[-1] == (
        "Cancelled"
    )


def test_a_command_from_planeflows_own_user_is_ignored_with_a_reason(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = start_first_item(services, sandbox_plane)
    block(services, task.id)
    result = command(services, sandbox_plane, "<p>/planeflow retry</p>", key=BOT_KEY)
    assert result.kind is Handled.IGNORED
    assert result.detail == "command refused: the comment is planeflow's own"
    now = services.store.get_task(task.id)
    assert now is not None and now.stage is Stage.BLOCKED
    assert replies(sandbox_plane) == []
    assert (
        "command refused: the comment is planeflow's own"
        in (services.store.timeline(task.id)[-1]["message"])
    )


def test_commands_are_refused_while_our_own_user_is_unknown(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = start_first_item(services, sandbox_plane)
    block(services, task.id)
    blind = CommentCommands(
        services.store, services.plane, services.actions, frozenset, services.dispatcher.send
    )
    item = first_item(sandbox_plane)
    event_id = stored_comment(services, sandbox_plane, item, "<p>/planeflow retry</p>", HUMAN_KEY)
    result = blind.handle(services.registry.projects["demo"], item.id, event_id)
    assert result.kind is Handled.IGNORED and "own Plane user is unknown" in result.detail
    now = services.store.get_task(task.id)
    assert now is not None and now.stage is Stage.BLOCKED


def test_a_non_member_is_refused_and_gets_no_reply(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = start_first_item(services, sandbox_plane)
    block(services, task.id)
    result = command(services, sandbox_plane, "<p>/planeflow retry</p>", key=GUEST_KEY)
    assert result.detail == "command refused: gus is not a member of project demo"
    now = services.store.get_task(task.id)
    assert now is not None and now.stage is Stage.BLOCKED
    assert replies(sandbox_plane) == []


def test_members_are_listed_once_then_cached(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    start_first_item(services, sandbox_plane)
    log = sandbox_plane.sandbox.request_log
    for _ in range(3):
        command(services, sandbox_plane, "<p>/planeflow status</p>")
    assert sum(1 for _, path in log if path.endswith("/members/")) == 1


def test_a_redelivered_comment_is_answered_once(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = start_first_item(services, sandbox_plane)
    block(services, task.id)
    item = first_item(sandbox_plane)
    event_id = stored_comment(services, sandbox_plane, item, "<p>/planeflow retry</p>", HUMAN_KEY)
    project = services.registry.projects["demo"]
    for _ in range(2):
        services.commands.handle(project, item.id, event_id)
        flush_outbox(services)
    assert len(replies(sandbox_plane)) == 1
    now = services.store.get_task(task.id)
    assert now is not None and now.stage is Stage.DEVELOPMENT


def test_an_item_without_a_task_is_answered_by_a_reply_message(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    command(services, sandbox_plane, "<p>/planeflow status</p>")
    assert services.store.get_task_by_issue(first_item(sandbox_plane).id) is None
    (message_id,) = services.store.r.lrange("dramatiq:plane", 0, -1)
    message = json.loads(services.store.r.hget("dramatiq:plane.msgs", message_id))
    assert message["actor_name"] == "post_reply"
    project_id, issue_id, reply, external_id = message["args"]
    assert "there is no task for this work item yet" in reply
    assert external_id.startswith("planeflow-reply-")
    from app.commands import post_reply

    post_reply(services.plane, project_id, issue_id, reply, external_id)
    post_reply(services.plane, project_id, issue_id, reply, external_id)  # a redelivery
    assert len(replies(sandbox_plane)) == 1
