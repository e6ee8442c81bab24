"""`/planeflow` commands written as comments in the sandbox Plane, end to end: its
`issue_comment` webhook, the receiver, a real worker, the reply comment in Plane."""

from __future__ import annotations

import time

import httpx

from app.domain.stages import Stage
from app.sandbox.plane_runner import SandboxPlaneRunner
from tests.e2e.conftest import wait_for
from tests.e2e.stack import Stack
from tests.helpers import demo_project, move

REPLY_WITHIN_S = 5.0


def comment(runner: SandboxPlaneRunner, item: str, html: str, who: str = "ada") -> None:
    """A person writes a comment in Plane's web app (the sandbox sends its webhook)."""
    resp = httpx.post(
        runner.base_url + "/_sandbox/comment", json={"item": item, "html": html, "as": who}
    )
    assert resp.status_code == 201, resp.text


def replies(runner: SandboxPlaneRunner, item: str) -> list[str]:
    found = httpx.get(runner.base_url + "/_sandbox/comments", params={"item": item}).json()
    return [
        c["comment_html"] for c in found if (c["external_id"] or "").startswith("planeflow-reply")
    ]


def test_retry_and_status_from_comments_and_our_own_comment_ignored(
    stack: Stack, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = next(iter(demo_project(sandbox_plane).items.values()))
    stack.describe(item, "[agent:fail-analysis] not yet")
    move(sandbox_plane, item, "To Analyse")
    blocked = stack.wait_stage(item, Stage.BLOCKED)
    name = blocked.work_item_id

    # planeflow's own user: ignored, with the reason, and no reply
    comment(sandbox_plane, name, "<p>/planeflow retry</p>", who="planeflow-bot")
    reason = "command refused: the comment is planeflow's own"
    wait_for(
        lambda: any(reason in e["message"] for e in stack.services.store.timeline(blocked.id)),
        10,
        "the refusal on the timeline",
    )
    task = stack.task(item)
    assert task.stage is Stage.BLOCKED and replies(sandbox_plane, name) == []

    # a member's /planeflow status: a reply within seconds
    asked = time.monotonic()
    comment(sandbox_plane, name, "<p>How is it going?</p><p>/planeflow status</p>")
    (status,) = wait_for(lambda: replies(sandbox_plane, name), REPLY_WITHIN_S, "a status reply")
    print(f"\nstatus reply {time.monotonic() - asked:.2f}s after the comment")
    assert "stage <b>blocked</b>" in status and "analyst failed" in status

    # /planeflow retry: the cause went away; the blocked item resumes and goes on
    stack.services.store.update_task(blocked.id, description="analyse me now")
    comment(sandbox_plane, name, "<p>/planeflow retry</p>")
    stack.wait_stage(item, Stage.REVIEW)
    messages = [e["message"] for e in stack.services.store.timeline(blocked.id)]
    assert "retry by Plane comment by ada: resumed: at analysis" in messages
    wait_for(lambda: len(replies(sandbox_plane, name)) == 2, REPLY_WITHIN_S, "a retry reply")
    assert "resumed: at analysis" in replies(sandbox_plane, name)[1]
