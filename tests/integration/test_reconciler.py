"""The reconciler against the sandbox Plane over real HTTP, with a fake Redis."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from actors.scheduler import Scheduler
from app.domain.models import JobState
from app.domain.stages import Stage
from app.projects import Registry
from app.queue import Dispatcher, make_redis_broker
from app.sandbox.plane_runner import SandboxPlaneRunner
from app.sandbox.plane_world import CLASSIC_STATES, Item
from app.services import Services
from tests.helpers import demo_project, first_item, flush_outbox, move, registry
from tests.integration.conftest import MakeServices


@pytest.fixture
def services(make_services: MakeServices, sandbox_plane: SandboxPlaneRunner) -> Services:
    """The DEMO project plus OLD, a project with Plane's classic states (aliases)."""
    world = sandbox_plane.sandbox.world
    human = world.user_for_key(sandbox_plane.sandbox.human_key or "")
    other = world.add_project(
        "OLD",
        "Old",
        human,
        states=(*CLASSIC_STATES, ("Approved", "started", "#0f0"), ("Rejected", "started", "#f00")),
    )
    world.create_item(other, {"name": "old item"}, human)
    return make_services(
        registry(old={"plane_project_id": other.id, "repo": "old-repo", "work_item_prefix": "OLD"})
    )


def moved(runner: SandboxPlaneRunner, item: Item, state: str, *, age_s: float = 130) -> None:
    """A human moved the card `age_s` ago (just past the 120 s grace); the webhook was lost."""
    move(runner, item, state)
    runner.sandbox.world.backdate(demo_project(runner).id, item.id, age_s)


def report_for(services: Services, name: str = "demo") -> Any:
    """One pass, then the Plane writes it asked for (a worker would flush them)."""
    report = services.reconciler.reconcile_project(services.registry.projects[name])
    flush_outbox(services)
    return report


def due_page(services: Services, name: str = "demo") -> None:
    services.store.r.hset(services.store.keys.reconcile_state(name), "rolling_next_at", 0)


def task_of(services: Services, item: Item) -> Any:
    return services.store.get_task_by_issue(item.id)


def test_in_progress_item_without_task_is_started_once(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = first_item(sandbox_plane)
    moved(sandbox_plane, item, "In Progress")
    first = report_for(services)
    assert first.replayed == 1 and first.error is None
    task = task_of(services, item)
    assert task is not None and task.stage is Stage.ANALYSIS
    second = report_for(services)
    assert second.replayed == 0
    assert len(services.store.list_tasks()) == 1
    assert services.store.counters()["replays:demo"] == 1


def test_distinct_to_analyse_is_polled_and_routed_to_start(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = first_item(sandbox_plane)
    moved(sandbox_plane, item, "To Analyse")
    assert report_for(services).replayed == 1
    assert task_of(services, item) is not None


def put_in_review(services: Services, runner: SandboxPlaneRunner, item: Item) -> str:
    moved(runner, item, "To Analyse")
    report_for(services)
    task = task_of(services, item)
    services.store.finish_job(task.active_job_id, "success")
    services.store.move_task(task.id, Stage.REVIEW, "test")
    return str(task.id)


@pytest.mark.parametrize(
    ("state", "stage"), [("Approved", Stage.MERGE), ("Rejected", Stage.DEVELOPMENT)]
)
def test_verdict_is_replayed_for_a_task_in_review(
    services: Services, sandbox_plane: SandboxPlaneRunner, state: str, stage: Stage
) -> None:
    item = first_item(sandbox_plane)
    task_id = put_in_review(services, sandbox_plane, item)
    moved(sandbox_plane, item, state)
    assert report_for(services).replayed == 1
    task = services.store.get_task(task_id)
    assert task is not None and task.stage is stage


def test_active_job_means_skip(services: Services, sandbox_plane: SandboxPlaneRunner) -> None:
    item = first_item(sandbox_plane)
    task_id = put_in_review(services, sandbox_plane, item)
    services.store.create_job(task_id, Stage.REVIEW)
    moved(sandbox_plane, item, "Approved")
    report = report_for(services)
    assert report.replayed == 0 and report.skipped["active job"] == 1


def test_within_grace_means_skip(services: Services, sandbox_plane: SandboxPlaneRunner) -> None:
    item = first_item(sandbox_plane)
    moved(sandbox_plane, item, "To Analyse", age_s=5)
    report = report_for(services)
    assert report.replayed == 0 and report.skipped["within grace"] == 1
    assert task_of(services, item) is None


def test_every_project_is_polled_with_its_own_states(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    world = sandbox_plane.sandbox.world
    old = services.registry.projects["old"]
    old_item = next(iter(world.projects[old.plane_project_id].items.values()))
    with sandbox_plane.sandbox.lock:
        world.move(
            old.plane_project_id, old_item.id, "In Progress", sandbox_plane.sandbox.human_key or ""
        )
        world.backdate(old.plane_project_id, old_item.id, 600)
    item = first_item(sandbox_plane)
    moved(sandbox_plane, item, "To Analyse")
    reports = services.reconciler.reconcile_plane_once()
    assert {r.project: r.replayed for r in reports} == {"demo": 1, "orch": 0, "old": 1}
    assert task_of(services, old_item).work_item_id.startswith("OLD-")
    # "orch" is not in the sandbox: Plane answers 403, reported, others unaffected
    assert next(r for r in reports if r.project == "orch").error is not None
    for name in ("demo", "old"):
        assert services.store.r.hget(services.store.keys.plane_states(name), "in_progress")
    demo_ip = services.store.r.hget(services.store.keys.plane_states("demo"), "in_progress")
    old_ip = services.store.r.hget(services.store.keys.plane_states("old"), "in_progress")
    assert demo_ip != old_ip


def test_the_rolling_scan_finds_a_trigger_on_the_last_page(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    world = sandbox_plane.sandbox.world
    project = demo_project(sandbox_plane)
    human = world.user_for_key(sandbox_plane.sandbox.human_key or "")
    with sandbox_plane.sandbox.lock:
        for n in range(2050):
            world.create_item(project, {"name": f"filler {n}"}, human)
        target = world.create_item(  # created last: the last page by creation
            project, {"name": "deep", "state": project.state_by_name("To Analyse").id}, human
        )
    for item_id in project.items:  # nothing recent: only the rolling scan sees them
        world.backdate(project.id, item_id, 3000)
    first, second, third = (report_for(services) for _ in range(3))
    assert [r.api_calls for r in (first, second, third)] == [3, 2, 2]  # states once
    assert [r.scanned for r in (first, second, third)] == [1000, 1000, 54]
    assert (first.replayed, second.replayed, third.replayed) == (0, 0, 1)
    assert third.round_done and task_of(services, target) is not None
    state = services.reconciler.state.get("demo")
    assert state.last_round_pages == 3 and state.covered_in_s is not None
    # the next round's pages are spaced out over reconcile_cover_s
    assert state.rolling_next_at > time.time() + services.settings.reconcile_cover_s / 3 - 5


def test_incremental_pass_of_an_idle_project_costs_one_call(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    project = demo_project(sandbox_plane)
    for item_id in project.items:
        sandbox_plane.sandbox.world.backdate(project.id, item_id, 3600)
    first = report_for(services)
    assert first.rolled and first.round_done  # three items: one page
    second = report_for(services)
    assert not second.rolled and second.api_calls == 1 and second.scanned == 0


def test_passes_are_spaced_to_keep_the_budget_share(make_services: Any) -> None:
    many = {
        f"p{n}": {
            "plane_project_id": f"00000000-0000-4000-8000-{n:012d}",
            "repo": f"r{n}",
            "work_item_prefix": f"P{n}",
        }
        for n in range(30)
    }
    services = make_services(Registry.model_validate({"projects": many}))
    for name in many:  # each pass: one listing and, on average, one rolling page
        services.store.r.hset(services.store.keys.reconcile_state(name), "calls_avg", 2.0)
    # 30 projects x 2 calls at 40 % of 50/min = 20 calls a minute: a pass every 3 minutes
    assert services.reconciler.interval_s() == pytest.approx(180.0)
    one = make_services(Registry.model_validate({"projects": {"p0": many["p0"]}}))
    assert one.reconciler.interval_s() == one.settings.reconcile_interval_s  # not stretched


def test_plane_down_for_one_project_does_not_stop_another(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = first_item(sandbox_plane)
    moved(sandbox_plane, item, "To Analyse")
    old = services.registry.projects["old"]
    sandbox_plane.sandbox.faults[old.plane_project_id] = "500"
    reports = {r.project: r for r in services.reconciler.reconcile_plane_once()}
    assert reports["old"].error is not None and "500" in reports["old"].error
    assert reports["demo"].replayed == 1
    assert services.store.counters()["reconcile_failures:old"] == 1


def test_overlapping_pass_is_skipped_not_stacked(services: Services) -> None:
    lock = services.store.r.lock(services.store.keys.reconcile_lock("demo"), timeout=30)
    assert lock.acquire(blocking=False)
    report = report_for(services)
    assert report.ran is False
    lock.release()


def test_drift_is_repaired(services: Services, sandbox_plane: SandboxPlaneRunner) -> None:
    item = first_item(sandbox_plane)
    moved(sandbox_plane, item, "To Analyse")
    report_for(services)
    task = task_of(services, item)
    services.store.finish_job(task.active_job_id, "success")
    services.store.move_task(task.id, Stage.DEVELOPMENT, "test")  # status write "lost"
    sandbox_plane.sandbox.world.backdate(demo_project(sandbox_plane).id, item.id, 600)
    due_page(services)  # the rolling scan's next page is due
    report = report_for(services)
    assert report.repaired == 1
    assert sandbox_plane.sandbox.world.state_history(item.id)[-1] == "In Progress"
    assert services.store.counters()["status_repaired"] == 1


def test_failed_status_write_is_retried(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = first_item(sandbox_plane)
    moved(sandbox_plane, item, "To Analyse")
    report_for(services)
    task = task_of(services, item)
    services.store.update_task(task.id, status_sync_ok=False)
    assert report_for(services).repaired == 1
    assert task_of(services, item).status_sync_ok is True


def running_job(services: Services, sandbox_plane: SandboxPlaneRunner, attempt: int) -> Any:
    item = first_item(sandbox_plane)
    moved(sandbox_plane, item, "To Analyse")
    report_for(services)
    task = task_of(services, item)
    services.store.finish_job(task.active_job_id, "success")
    services.store.move_task(task.id, Stage.DEVELOPMENT, "analysis done")
    job = services.store.create_job(task.id, Stage.DEVELOPMENT, attempt=attempt, time_limit_s=60)
    old = datetime.now(UTC) - timedelta(seconds=60 + services.settings.job_lost_margin_s + 5)
    services.store.update_job(job.id, state=JobState.RUNNING, started_at=old, heartbeat_at=old)
    return task, job


def test_stuck_running_job_is_marked_lost_and_retried(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task, job = running_job(services, sandbox_plane, attempt=1)
    before = services.store.r.llen("dramatiq:jobs")
    assert services.reconciler.sweep_jobs() == 1
    assert services.store.get_job(job.id).state is JobState.LOST
    retry = services.store.active_job(services.store.get_task(task.id))
    assert retry is not None and retry.attempt == 2 and retry.stage is Stage.DEVELOPMENT
    assert services.store.r.llen("dramatiq:jobs") == before + 1


def test_job_lost_too_often_blocks_the_task(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task, _ = running_job(services, sandbox_plane, attempt=3)
    services.reconciler.sweep_jobs()
    task = services.store.get_task(task.id)
    assert task.stage is Stage.BLOCKED and task.failed_stage is Stage.DEVELOPMENT
    assert "lost 3 time(s)" in (task.blocked_reason or "")


def test_queued_job_never_started_is_sent_again(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = first_item(sandbox_plane)
    moved(sandbox_plane, item, "To Analyse")
    report_for(services)
    job_id = task_of(services, item).active_job_id
    old = datetime.now(UTC) - timedelta(seconds=services.settings.job_resend_after_s + 5)
    services.store.update_job(job_id, created_at=old)
    before = services.store.r.llen("dramatiq:jobs")
    assert services.reconciler.sweep_jobs() == 1
    assert services.store.r.llen("dramatiq:jobs") == before + 1
    assert services.reconciler.sweep_jobs() == 0  # not again before the delay


def test_replays_without_webhooks_warn_and_shorten_the_interval(
    services: Services, sandbox_plane: SandboxPlaneRunner, caplog: pytest.LogCaptureFixture
) -> None:
    item = first_item(sandbox_plane)
    moved(sandbox_plane, item, "To Analyse")
    with caplog.at_level(logging.WARNING):
        report_for(services)
    assert "webhook may be disabled" in caplog.text
    key = services.store.keys.reconcile_state("demo")
    assert services.store.r.hget(key, "webhooks_silent") == "1"
    reconciler = services.reconciler
    assert "demo" in [p.name for p in reconciler.due_projects()]
    next_due = float(services.store.r.hget(key, "next_due"))
    sooner = max(services.settings.reconcile_interval_s // 4, reconciler.share_interval_s())
    assert next_due - reconciler.clock() <= sooner + 1 < services.settings.reconcile_interval_s
    # webhooks come back: the meter clears
    services.store.r.hset(services.store.keys.webhooks_last, "demo", datetime.now(UTC).isoformat())
    report_for(services)
    assert services.store.r.hget(key, "webhooks_silent") == "0"


def test_due_projects_offers_each_project_once_per_interval(services: Services) -> None:
    reconciler = services.reconciler
    assert {p.name for p in reconciler.due_projects()} == {"demo", "orch", "old"}
    assert reconciler.due_projects() == []


def test_one_of_two_schedulers_leads(
    services: Services, fake_server: fakeredis.FakeServer, fake_redis: Any
) -> None:
    broker = make_redis_broker(client=fakeredis.FakeRedis(server=fake_server))
    a = Scheduler(services.settings, fake_redis, Dispatcher(broker), tick_s=1, name="a")
    b = Scheduler(services.settings, fake_redis, Dispatcher(broker), tick_s=1, name="b")
    for _ in range(5):
        a.tick()
        b.tick()
    assert (a.ticks_enqueued, b.ticks_enqueued) == (5, 0)
    assert fake_redis.llen("dramatiq:reconcile") == 5
    # the leader dies: its lock expires, the standby takes over
    fake_redis.delete(services.settings.keys.scheduler_lock)
    assert b.tick() is True and b.leader
    assert a.tick() is False and not a.leader
    broker.close()


def test_a_blocked_task_resumes_only_on_a_move_made_after_the_block(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = first_item(sandbox_plane)
    moved(sandbox_plane, item, "In Progress")  # left over: our "blocked" write failed
    report_for(services)
    task = task_of(services, item)
    services.store.finish_job(task.active_job_id, "failure")
    services.store.move_task(task.id, Stage.BLOCKED, "agent failed", failed_stage=Stage.DEVELOPMENT)
    # Plane still shows our earlier "In Progress" write: the "Blocked" write was lost
    world = sandbox_plane.sandbox.world
    with sandbox_plane.sandbox.lock:
        world.projects[demo_project(sandbox_plane).id].items[item.id].state_id = (
            demo_project(sandbox_plane).state_by_name("In Progress").id
        )
    world.backdate(demo_project(sandbox_plane).id, item.id, 600)
    due_page(services)  # the rolling scan's next page is due
    report = report_for(services)
    assert report.replayed == 0 and report.skipped["in step"] == 1
    assert task_of(services, item).stage is Stage.BLOCKED
    assert report.repaired == 1  # the stale "In Progress" is set back to "Blocked"
    assert sandbox_plane.sandbox.world.state_history(item.id)[-1] == "Blocked"
    # a human moves it to To Analyse after the block (webhook lost): that one resumes it
    move(sandbox_plane, item, "To Analyse")
    sandbox_plane.sandbox.world.backdate(demo_project(sandbox_plane).id, item.id, 130)
    services.store.r.hset(
        services.store.keys.task(task.id),
        "updated_at",
        (datetime.now(UTC) - timedelta(seconds=300)).isoformat(),
    )
    assert report_for(services).replayed == 1
    assert task_of(services, item).stage is Stage.DEVELOPMENT


def test_worktrees_of_finished_tasks_are_removed(services: Services, tmp_path: Path) -> None:
    store = services.store
    done, _ = store.create_task_atomic(
        "i-done", "DEMO-7", "r", "b", Stage.ANALYSIS, "t", project="demo"
    )
    live, _ = store.create_task_atomic(
        "i-live", "DEMO-8", "r", "b", Stage.ANALYSIS, "t", project="demo"
    )
    store.move_task(done.id, Stage.CANCELLED, "cancelled")
    worktrees = services.settings.repos_dir / "demo-worktrees"
    for name in (done.id, live.id, "_deploy"):
        (worktrees / name).mkdir(parents=True)
    assert services.reconciler.sweep_worktrees() == 1
    assert sorted(p.name for p in worktrees.iterdir()) == sorted([live.id, "_deploy"])
