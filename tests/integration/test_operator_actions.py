"""Operator actions: retry, cancel and requeue, with where they came from on the record."""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
import pytest
from dramatiq.middleware import Retries

from actors.dead_letters import DeadLetterNotes
from app.actions import Origin
from app.domain.models import JobState
from app.domain.results import Handled
from app.domain.stages import Stage
from app.queue import JOBS_QUEUE, make_redis_broker
from app.queue_state import QueueState
from app.sandbox.plane_runner import SandboxPlaneRunner
from app.services import Services
from app.store import Store
from tests.conftest import RedisServer
from tests.helpers import first_item, flush_outbox, start_first_item

CLI = Origin("cli", "ada")
DASHBOARD = Origin("dashboard", "127.0.0.1")


def test_origins_read_as_the_timeline_says_them() -> None:
    assert str(CLI) == "cli (user ada)"
    assert str(DASHBOARD) == "dashboard (client 127.0.0.1)"
    assert str(Origin("comment", "ada")) == "Plane comment by ada"


def test_retry_of_a_task_that_is_not_blocked_is_refused_with_the_reason(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = start_first_item(services, sandbox_plane)
    result = services.actions.retry(task, DASHBOARD)
    assert result.kind is Handled.IGNORED
    assert result.detail == "nothing to retry: the task is in analysis, not blocked"
    last = services.store.timeline(task.id)[-1]
    assert (last["kind"], last["message"]) == (
        "action",
        "retry by dashboard (client 127.0.0.1): ignored: nothing to retry: the task is in "
        "analysis, not blocked",
    )


def test_cancel_twice_cancels_once(services: Services, sandbox_plane: SandboxPlaneRunner) -> None:
    task = start_first_item(services, sandbox_plane)
    assert services.actions.cancel(task, CLI).kind is Handled.CANCELLED
    again = services.actions.cancel(task, CLI)
    assert again.detail == "nothing to cancel: the task is already cancelled"
    flush_outbox(services)
    history = sandbox_plane.sandbox.world.state_history(first_item(sandbox_plane).id)
    assert history.count("Cancelled") == 1
    job = services.store.get_job(task.active_job_id or "")
    assert job is not None and job.state is JobState.CANCELLED
    audit = services.store.recent_actions()
    assert [a["result"] for a in audit] == [f"ignored: {again.detail}", "cancelled"]
    assert {a["origin"] for a in audit} == {"cli (user ada)"}


def test_retry_resumes_at_the_failed_stage(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    task = start_first_item(services, sandbox_plane)
    services.store.finish_job(task.active_job_id or "", "failure")
    services.store.move_task(task.id, Stage.BLOCKED, "gate", failed_stage=Stage.QUALITY_GATE)
    result = services.actions.retry(task, CLI)
    assert (result.kind, result.stage) == (Handled.RESUMED, Stage.QUALITY_GATE)
    flush_outbox(services)
    history = sandbox_plane.sandbox.world.state_history(first_item(sandbox_plane).id)
    assert history[-1] == "Quality Gate"


@pytest.mark.redis_server
def test_a_message_dead_lettered_by_dramatiq_is_requeued_and_runs(
    redis_server: RedisServer, real_store: Store
) -> None:
    """Dramatiq itself dead-letters the message (a real Worker, retries used up); the
    requeue puts it back with its retries cleared, and a worker runs it again."""
    broker = make_redis_broker(
        redis_server.url, middleware=[Retries(max_retries=0), DeadLetterNotes(real_store.keys)]
    )
    runs: list[str] = []
    ran_twice = threading.Event()

    def run_job(job_id: str) -> None:
        runs.append(job_id)
        if len(runs) == 1:
            raise RuntimeError("the agent host is down")
        ran_twice.set()

    dramatiq.actor(broker=broker, actor_name="run_job", queue_name=JOBS_QUEUE)(run_job)
    queues = QueueState(real_store.r)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        broker.enqueue(
            dramatiq.Message(
                queue_name=JOBS_QUEUE, actor_name="run_job", args=("7",), kwargs={}, options={}
            )
        )
        dead = _wait(lambda: queues.dead_letters(JOBS_QUEUE))
        assert dead[0].actor == "run_job" and dead[0].arguments == ("7",)
        assert dead[0].error == "RuntimeError: the agent host is down"
        depth = {d.queue: d for d in queues.depths()}[JOBS_QUEUE]
        assert (depth.ready, depth.dead) == (0, 1)
        services = _actions(real_store, broker)
        result = services.requeue(dead[0].message_id, DASHBOARD)
        assert result.kind is Handled.MOVED, result
        assert ran_twice.wait(10), runs
        assert queues.dead_letters(JOBS_QUEUE) == []
        again = services.requeue(dead[0].message_id, DASHBOARD)
        assert again.detail == f"no dead-lettered message {dead[0].message_id!r}"
    finally:
        worker.stop()
        broker.close()
    assert runs == ["7", "7"]
    audit = real_store.recent_actions()
    assert audit[1]["action"] == "requeue" and audit[1]["origin"] == "dashboard (client 127.0.0.1)"


def _actions(store: Store, broker: Any) -> Any:
    from app.actions import Actions
    from app.outbox import PlaneOutbox
    from app.outbox_store import OutboxStore
    from app.queue import Dispatcher

    dispatcher = Dispatcher(broker)
    outbox = PlaneOutbox(OutboxStore(store.r, store.keys), lambda *_: None)
    return Actions(store, outbox, dispatcher, QueueState(store.r))


def _wait(read: Any, timeout: float = 10.0) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = read()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_the_boards_plane_link_opens_the_work_item_on_the_sandbox(
    services: Services, sandbox_plane: SandboxPlaneRunner
) -> None:
    import httpx

    from app.board import Board

    task = start_first_item(services, sandbox_plane)
    board = Board(services.settings, services.store, services.registry, services.queue_state)
    (row,) = board.snapshot()["tasks"]["analysis"]
    assert row["plane_url"].startswith(sandbox_plane.base_url + "/acme/projects/")
    page = httpx.get(row["plane_url"])
    assert page.status_code == 200 and task.title in page.text and "Analysis" in page.text
