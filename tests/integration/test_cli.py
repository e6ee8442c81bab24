"""Operator commands against a real Redis: tasks, explain, status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from app.cli import main
from app.domain.results import TimelineKind
from app.domain.stages import Stage
from app.store import Store
from tests.conftest import RedisServer
from tests.helpers import write_registry


@pytest.fixture
def cli_env(
    tmp_path: Path,
    redis_server: RedisServer,
    real_redis: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = write_registry(
        tmp_path / "projects.toml",
        {"demo": {"plane_project_id": "p-1", "repo": "r", "work_item_prefix": "DEMO"}},
    )
    monkeypatch.setenv("ORCH_REDIS_URL", redis_server.url)
    monkeypatch.setenv("ORCH_PROJECTS_FILE", str(registry))
    monkeypatch.setenv("ORCH_PLANE_USER_ID", "our-bot")


def test_tasks_explain_and_status(
    cli_env: None, real_store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    task, _ = real_store.create_task_atomic(
        "i-1", "DEMO-1", "r", "feature/DEMO-1-x", Stage.ANALYSIS, "Title", project="demo"
    )
    real_store.record(
        task.id, TimelineKind.IGNORED, "ignored: task already running (stage analysis)"
    )
    real_store.incr_counter("replays:demo", 2)

    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "DEMO-1" in out and "analysis" in out and "1 task(s)" in out
    assert main(["tasks", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["work_item_id"] == "DEMO-1"

    assert main(["explain", "demo-1"]) == 0
    out = capsys.readouterr().out
    assert "task created in stage analysis" in out and "ignored: task already running" in out
    assert main(["explain", "DEMO-99"]) == 1

    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "never" in out and "replays:demo=2" in out

    assert main(["replay", "--since", "-"]) == 0
    assert "0 event(s) replayed" in capsys.readouterr().out
