"""A work item really travels analysis -> ... -> done, on real Redis, a real worker, the
sandbox Plane (webhooks into a real receiver) and a local bare git repo as the forge."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from app.domain.stages import Stage
from app.sandbox.plane_runner import SandboxPlaneRunner
from tests.conftest import RedisServer
from tests.e2e.conftest import wait_for
from tests.e2e.stack import FULL_JOURNEY, Stack, make_stack
from tests.helpers import (
    ServedApp,
    demo_project,
    first_item,
    move,
    pipeline_project,
)


def test_a_work_item_travels_from_analysis_to_done(
    stack: Stack, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = first_item(sandbox_plane)
    move(sandbox_plane, item, "To Analyse")
    task = stack.wait_stage(item, Stage.REVIEW)
    assert task.pr_url and task.pr_url.endswith(f"#{task.branch}")
    assert any("Ready for review" in c and task.branch in c for c in stack.comments(item))
    assert stack.remote_file("CHANGES.md") == "# demo\n" or "DEMO-" not in stack.remote_file(
        "CHANGES.md"
    )  # nothing merged before the verdict

    move(sandbox_plane, item, "Approved")  # the human verdict, in the web app
    done = stack.wait_stage(item, Stage.DONE)
    assert done.merged_sha
    assert f"- {task.work_item_id}: implemented" in stack.remote_file("CHANGES.md")
    assert "Analysis of" in stack.remote_file(f"docs/work-items/{task.work_item_id}/analysis.md")
    assert sandbox_plane.sandbox.world.state_history(item.id) == FULL_JOURNEY
    review, closing = stack.comments(item)  # one review comment, one closing comment
    for milestone in ("Ready for review", task.pr_url, "Analysis done", "Quality gates"):
        assert milestone in review, milestone
    for milestone in ("Done", "Merged into", "Deployed", "HEALTHY"):
        assert milestone in closing, milestone
    # every read, status write and comment for this item (states and users/me are shared)
    calls = [r for r in sandbox_plane.sandbox.request_log if item.id in r[1]]
    assert len(calls) <= 12, calls
    print(f"\n{len(calls)} Plane calls for the item:", *calls, sep="\n  ")
    budget = stack.services.store.get_task(task.id)
    assert budget.attempts_used == 3 and budget.tokens_used == 120 + 450 + 0


def test_gate_failure_goes_back_to_development_then_passes(
    stack: Stack, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = first_item(sandbox_plane)
    stack.describe(item, "Handle the empty case [gate:fail-once]")
    move(sandbox_plane, item, "To Analyse")
    task = stack.wait_stage(item, Stage.REVIEW)
    assert task.rework_count == 1
    messages = [e["message"] for e in stack.services.store.timeline(task.id)]
    assert any("quality_gate -> development: gate(s) failed: flag" in m for m in messages)
    worktree = stack.services.settings.repos_dir / "demo-worktrees" / task.id
    feedback = (worktree / "docs/work-items" / task.work_item_id / "feedback-1.md").read_text()
    assert "gate.flag says fail" in feedback  # the gate output reached the developer


def test_rejected_verdict_brings_the_comment_to_the_developer(
    stack: Stack, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = first_item(sandbox_plane)
    move(sandbox_plane, item, "To Analyse")
    task = stack.wait_stage(item, Stage.REVIEW)
    world = sandbox_plane.sandbox.world
    with sandbox_plane.sandbox.lock:
        world.add_comment(
            demo_project(sandbox_plane),
            demo_project(sandbox_plane).items[item.id],
            {"comment_html": "<p>Rename the flag, please.</p>"},
            world.user_for_key(sandbox_plane.sandbox.human_key or ""),
        )
    move(sandbox_plane, item, "Rejected")
    again = stack.wait_stage(item, Stage.REVIEW, rework_count=1)
    assert again.rework_count == 1
    worktree = stack.services.settings.repos_dir / "demo-worktrees" / task.id
    feedback = (worktree / "docs/work-items" / task.work_item_id / "feedback-1.md").read_text()
    assert "Rename the flag, please." in feedback


@pytest.fixture
def slow_stack(
    tmp_path: Path,
    redis_server: RedisServer,
    real_redis: redis.Redis,
    sandbox_plane: SandboxPlaneRunner,
) -> Iterator[Stack]:
    base = pipeline_project(Path("x"), "x")["agents"]
    agents = {**base, "analyst": {**base["analyst"], "time_limit_s": 1, "max_attempts": 2}}
    yield from make_stack(tmp_path, redis_server, sandbox_plane, agents=agents)


def test_agent_timeout_is_retried_then_blocked(
    slow_stack: Stack, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = first_item(sandbox_plane)
    slow_stack.describe(item, "Think hard [agent:slow-analysis=30]")
    move(sandbox_plane, item, "To Analyse")
    task = slow_stack.wait_stage(item, Stage.BLOCKED, timeout=60)
    assert task.failed_stage is Stage.ANALYSIS
    assert "timed out" in (task.blocked_reason or "") and "2 attempt(s)" in task.blocked_reason
    assert sandbox_plane.sandbox.world.state_history(item.id)[-1] == "Blocked"
    assert any("Blocked in stage" in c for c in slow_stack.comments(item))
    # a start trigger resumes at the stage that failed, keeping what was done
    slow_stack.describe(item, "Think less")
    move(sandbox_plane, item, "To Analyse")
    resumed = slow_stack.wait_stage(item, Stage.REVIEW, timeout=60)
    assert resumed.id == task.id


def test_monitoring_failure_blocks(
    tmp_path: Path,
    redis_server: RedisServer,
    real_redis: redis.Redis,
    sandbox_plane: SandboxPlaneRunner,
) -> None:
    gen = make_stack(
        tmp_path,
        redis_server,
        sandbox_plane,
        health_url="http://127.0.0.1:9/health",
        health_failure_threshold=2,
    )
    stack = next(gen)
    try:
        item = first_item(sandbox_plane)
        move(sandbox_plane, item, "To Analyse")
        stack.wait_stage(item, Stage.REVIEW)
        move(sandbox_plane, item, "Approved")
        task = stack.wait_stage(item, Stage.BLOCKED)
        assert task.failed_stage is Stage.MONITORING
        assert "DEGRADED" in (task.blocked_reason or "")
        assert any("DEGRADED" in c for c in stack.comments(item))
        # the deploy slot of the repo was given back
        assert (
            stack.services.store.r.get(stack.services.store.keys.deploy_lock(str(stack.remote)))
            is None
        )
    finally:
        gen.close()


def test_gitea_ci_status_webhook_reevaluates_a_waiting_merge(
    tmp_path: Path,
    redis_server: RedisServer,
    real_redis: redis.Redis,
    sandbox_plane: SandboxPlaneRunner,
) -> None:
    import time

    import httpx
    from pydantic import SecretStr

    from app.sandbox.gitea import FakeGitea, make_app

    gitea = FakeGitea("t0ken", webhook_secret="gitea-secret")
    gitea.default_state = "pending"  # CI has not reported yet
    served = ServedApp(make_app(gitea))
    gitea.base_url = served.url
    gen = make_stack(
        tmp_path,
        redis_server,
        sandbox_plane,
        settings_overrides={
            "gitea_base_url": served.url,
            "gitea_token": SecretStr("t0ken"),
            "gitea_webhook_secret": SecretStr("gitea-secret"),
        },
        forge="gitea",
        gitea_repo="acme/demo",
    )
    stack = next(gen)
    try:
        gitea.add_repo("acme/demo", stack.remote)
        gitea.webhook_url = stack.web_url + "/webhooks/gitea"
        item = first_item(sandbox_plane)
        move(sandbox_plane, item, "To Analyse")
        task = stack.wait_stage(item, Stage.REVIEW)
        assert task.pr_url == f"{served.url}/acme/demo/pulls/1"
        move(sandbox_plane, item, "Approved")
        wait_for(
            lambda: any(
                "waiting for forge CI" in e["message"]
                for e in stack.services.store.timeline(task.id)
            ),
            30,
            "CI wait",
        )
        assert stack.task(item).stage is Stage.MERGE
        posted = time.monotonic()
        httpx.post(
            served.url + "/_fake/status",
            json={"repo": "acme/demo", "branch": task.branch, "state": "success"},
        ).raise_for_status()
        stack.wait_stage(item, Stage.DONE, timeout=25)
        assert time.monotonic() - posted < 20  # the webhook, not the 30 s re-check
        assert gitea.merges == [("acme/demo", 1)]
        messages = [e["message"] for e in stack.services.store.timeline(task.id)]
        assert "forge event: merge re-evaluated now" in messages
    finally:
        gen.close()
        served.stop()


def test_cancel_terminates_the_running_agent(
    stack: Stack, sandbox_plane: SandboxPlaneRunner
) -> None:
    import os
    import time

    from app.domain.models import JobState

    item = first_item(sandbox_plane)
    stack.describe(item, "A long one [agent:slow-analysis=60]")
    move(sandbox_plane, item, "To Analyse")

    def agent_running() -> Any:
        task = stack.task(item)
        job = stack.services.store.active_job(task) if task else None
        return job if job is not None and job.agent_pgid else None

    job = wait_for(agent_running, 30, "agent started")
    cancelled_at = time.monotonic()
    move(sandbox_plane, item, "Cancelled")
    wait_for(
        lambda: stack.services.store.get_job(job.id).state is JobState.CANCELLED,
        20,
        "job cancelled",
    )

    def agent_gone() -> bool:
        try:
            os.killpg(job.agent_pgid, 0)
            return False
        except ProcessLookupError:
            return True

    wait_for(agent_gone, 20, "agent process group killed")
    assert time.monotonic() - cancelled_at < 20  # not the agent's 60 s
    assert stack.task(item).stage is Stage.CANCELLED


def test_a_verdict_given_while_the_reviewer_runs_is_not_lost(
    stack: Stack, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = first_item(sandbox_plane)
    stack.describe(item, "Look closely [agent:slow-review=3]")
    move(sandbox_plane, item, "To Analyse")

    def reviewer_running() -> Any:
        task = stack.task(item)
        job = stack.services.store.active_job(task) if task else None
        shown = task is not None and task.status_key == "code_review"  # what the human sees
        running = job is not None and job.stage is Stage.REVIEW and job.agent_pgid
        return job if running and shown else None

    wait_for(reviewer_running, 30, "reviewer running, Plane showing Code Review")
    move(sandbox_plane, item, "Approved")  # too early: the review job is still active
    task = stack.wait_stage(item, Stage.DONE, timeout=40)
    messages = [e["message"] for e in stack.services.store.timeline(task.id)]
    assert any("while job" in m for m in messages)  # ignored when it arrived ...
    assert any("verdict given while the review job ran" in m for m in messages)  # ... not lost
