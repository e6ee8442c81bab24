"""Many cards on one repository reach done: the merge queue resolves their conflicts.

The sample developer appends to CHANGES.md and writes gate.flag, so any two cards
conflict at merge. A real redis-server, a Dramatiq worker, webhooks from the sandbox.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from app.domain.stages import Stage
from app.sandbox.plane_runner import SandboxPlaneRunner
from tests.conftest import RedisServer
from tests.e2e.conftest import wait_for
from tests.e2e.stack import Stack, make_stack
from tests.helpers import demo_project, move


def cards(runner: SandboxPlaneRunner) -> list[object]:
    return list(demo_project(runner).items.values())


def approve_all_at_once(stack: Stack, items: list[object]) -> None:
    for item in items:
        move(stack.runner, item, "To Analyse")  # type: ignore[arg-type]
    for item in items:
        stack.wait_stage(item, Stage.REVIEW)  # type: ignore[arg-type]
    for item in items:
        move(stack.runner, item, "Approved")  # type: ignore[arg-type]


@pytest.fixture
def queue_stack(
    tmp_path: Path,
    redis_server: RedisServer,
    real_redis: redis.Redis,
    sandbox_plane: SandboxPlaneRunner,
    request: pytest.FixtureRequest,
) -> Iterator[Stack]:
    overrides = getattr(request, "param", {})
    yield from make_stack(tmp_path, redis_server, sandbox_plane, **overrides)


def test_cards_approved_together_on_one_repository_all_merge(
    queue_stack: Stack, sandbox_plane: SandboxPlaneRunner
) -> None:
    items = cards(sandbox_plane)
    assert len(items) == 3
    approve_all_at_once(queue_stack, items)
    done = [queue_stack.wait_stage(item, Stage.DONE, timeout=90) for item in items]  # type: ignore[arg-type]
    changes = queue_stack.remote_file("CHANGES.md")
    for task in done:
        assert f"- {task.work_item_id}: implemented" in changes
        assert task.conflict_rework_count <= 1  # at most once per merge
        assert task.rework_count == 0  # not counted as rework
    resolved = [t for t in done if t.conflict_rework_count == 1]
    assert resolved, "the cards merged one after another without a conflict?"
    for task in resolved:
        closing = queue_stack.comments_of(task.plane_issue_id)[-1]
        assert "resolved by the developer agent" in closing and "Quality gates" in closing
    assert queue_stack.services.store.merge_slot_holder(done[0].repo) is None


@pytest.mark.parametrize("queue_stack", [{"reapprove_after_conflict": True}], indirect=True)
def test_reapprove_after_conflict_asks_the_human_again(
    queue_stack: Stack, sandbox_plane: SandboxPlaneRunner
) -> None:
    pair = cards(sandbox_plane)[:2]
    approve_all_at_once(queue_stack, pair)

    def one_back_in_review() -> object:
        tasks = [queue_stack.task(item) for item in pair]  # type: ignore[arg-type]
        again = [t for t in tasks if t.stage is Stage.REVIEW and t.conflict_rework_count == 1]
        return again[0] if again and queue_stack.settled(again[0]) else None

    again = wait_for(one_back_in_review, 60, "the second card back in review")
    assert again.stage is Stage.REVIEW
    item = next(i for i in pair if i.id == again.plane_issue_id)  # type: ignore[attr-defined]
    assert sandbox_plane.sandbox.world.state_history(item.id)[-1] == "Code Review"
    move(sandbox_plane, item, "Approved")  # type: ignore[arg-type]
    for each in pair:
        assert queue_stack.wait_stage(each, Stage.DONE, timeout=60).merged_sha  # type: ignore[arg-type]


@pytest.mark.parametrize("queue_stack", [{"max_conflict_rework": 0}], indirect=True)
def test_a_conflict_past_max_conflict_rework_blocks_with_the_reason(
    queue_stack: Stack, sandbox_plane: SandboxPlaneRunner
) -> None:
    first, second = cards(sandbox_plane)[:2]
    approve_all_at_once(queue_stack, [first, second])

    def outcome() -> object:
        now = [queue_stack.task(first), queue_stack.task(second)]
        stages = sorted(t.stage.value for t in now)
        return now if stages == ["blocked", "done"] else None

    now = wait_for(outcome, 60, "one card done, the other blocked")
    blocked = next(t for t in now if t.stage is Stage.BLOCKED)
    assert "merge conflict with main" in (blocked.blocked_reason or "")
    assert "max_conflict_rework (0)" in (blocked.blocked_reason or "")
    # freed right after the transaction that blocked it (not inside it): wait for that
    store = queue_stack.services.store
    wait_for(lambda: store.merge_slot_holder(blocked.repo) is None, 5, "merge slot freed")


PEEK = (
    "import os\n"
    "print('ENV', sorted(k for k in os.environ if k.startswith('ORCH_')))\n"
    "try:\n"
    "    raw = open(f'/proc/{os.getppid()}/environ', 'rb').read()\n"
    "    print('PARENT', raw.count(b'ORCH_'))\n"
    "except OSError as exc:\n"
    "    print('PARENT unreadable', type(exc).__name__)\n"
)
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")


@pytest.mark.skipif(
    os.geteuid() != 0 or SYSTEM_PYTHON is None or not hasattr(os, "getuid"),
    reason="agents as another unix user need a root worker (and a python that user may run)",
)
def test_agents_as_another_user_see_no_secret(
    tmp_path: Path,
    redis_server: RedisServer,
    real_redis: redis.Redis,
    sandbox_plane: SandboxPlaneRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORCH_PLANE_API_TOKEN", "the-plane-key")  # in the worker's /proc
    for up in [tmp_path, *tmp_path.parents][:-1]:  # pytest's tmp dirs are private
        up.chmod(up.stat().st_mode | 0o011)
    peek = {"argv": [str(SYSTEM_PYTHON), "-c", PEEK], "time_limit_s": 30}
    agents = {"analyst": peek, "developer": peek, "reviewer": peek}
    stacks = make_stack(
        tmp_path, redis_server, sandbox_plane, {"agent_user": "nobody"}, agents=agents, gates=[]
    )
    stack = next(stacks)
    try:
        item = cards(sandbox_plane)[0]
        move(sandbox_plane, item, "To Analyse")  # type: ignore[arg-type]
        stack.wait_stage(item, Stage.REVIEW)  # type: ignore[arg-type]
        review = stack.comments(item)[-1]  # type: ignore[arg-type]
        assert review.count("ENV []") == 3  # analyst, developer, reviewer
        assert review.count("PARENT unreadable PermissionError") == 3
        assert "the-plane-key" not in review
    finally:
        stacks.close()
