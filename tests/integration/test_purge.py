"""Retention: finished tasks older than the cutoff go, leaving a tombstone that keeps a
late delivery or a replay from starting the work item again."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.domain.errors import ConfigError
from app.domain.models import utcnow
from app.domain.results import Handled
from app.domain.stages import Stage
from app.purge import parse_age, purge
from app.sandbox.plane_runner import SandboxPlaneRunner
from app.services import Services
from tests.helpers import first_item, move, start_first_item


def test_a_done_task_is_purged_and_never_restarted(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    store = services.store
    item = first_item(sandbox_plane)
    task = start_first_item(services, sandbox_plane)
    project = services.registry.projects["demo"]
    assert task is not None and task.active_job_id
    store.finish_job(task.active_job_id, "success")
    store.move_task(task.id, Stage.DONE, "test")
    jobs_dir = services.settings.repos_dir / "jobs" / task.active_job_id
    jobs_dir.mkdir(parents=True)
    assert purge(store, services.settings.repos_dir, 3600).tasks == []  # too recent
    store.update_task(task.id, touch=False, updated_at=utcnow() - timedelta(days=31))
    dry = purge(store, services.settings.repos_dir, parse_age("30d"), dry_run=True)
    assert dry.tasks == [task.work_item_id] and store.get_task(task.id) is not None
    report = purge(store, services.settings.repos_dir, parse_age("30d"))
    assert report.tasks == [task.work_item_id] and report.jobs == 1 and report.directories == 1
    assert store.get_task(task.id) is None and not jobs_dir.exists()
    assert store.r.exists(store.keys.task_log(task.id)) == 0
    assert store.get_job(task.active_job_id) is None
    # a late delivery (or a replay) of the purged work item's start starts nothing
    move(sandbox_plane, item, "To Analyse")
    current = services.plane.get_work_item(project.plane_project_id, item.id)
    again = services.events.route(current, project, source="late webhook")
    assert again.kind is Handled.IGNORED and "was purged" in again.detail
    assert store.get_task_by_issue(item.id) is None


def test_ages() -> None:
    assert parse_age("30d") == 30 * 86400 and parse_age("12h") == 43200
    assert parse_age("90m") == 5400 and parse_age("2") == 2 * 86400
    with pytest.raises(ConfigError):
        parse_age("a month")
