"""The Redis store on fakeredis: tasks, stage sets, timeline, jobs, locks."""

from __future__ import annotations

import threading

import pytest

from app.domain.errors import StoreError
from app.domain.models import JobState
from app.domain.stages import Stage
from app.store import Store


def make(store: Store, issue: str = "iss-1") -> tuple[str, bool]:
    task, created = store.create_task_atomic(
        issue, "ORCH-1", "orch", "feature/ORCH-1-x", Stage.ANALYSIS, "Title", project="orch"
    )
    return task.id, created


def test_create_task_is_idempotent_per_issue(store: Store) -> None:
    first, created1 = make(store)
    second, created2 = make(store)
    assert (created1, created2) == (True, False)
    assert first == second
    assert [t.id for t in store.list_tasks()] == [first]


def test_create_task_writes_index_stage_set_and_timeline(store: Store) -> None:
    task_id, _ = make(store)
    keys = store.keys
    assert store.r.get(keys.task_by_issue("iss-1")) == task_id
    assert store.r.smembers(keys.tasks_in_stage("analysis")) == {task_id}
    task = store.get_task_by_issue("iss-1")
    assert task is not None and task.title == "Title" and task.stage is Stage.ANALYSIS
    assert [e["kind"] for e in store.timeline(task_id)] == ["created"]


def test_distinct_issues_get_distinct_tasks(store: Store) -> None:
    a, _ = make(store, "iss-a")
    b, _ = make(store, "iss-b")
    assert a != b
    assert {t.id for t in store.list_tasks(Stage.ANALYSIS)} == {a, b}


def test_move_task_switches_stage_sets_and_logs_reason(store: Store) -> None:
    task_id, _ = make(store)
    moved = store.move_task(task_id, Stage.DEVELOPMENT, "analysis succeeded")
    assert moved.stage is Stage.DEVELOPMENT
    assert store.r.smembers(store.keys.tasks_in_stage("analysis")) == set()
    assert store.r.smembers(store.keys.tasks_in_stage("development")) == {task_id}
    last = store.timeline(task_id)[-1]
    assert last["kind"] == "transition" and last["to"] == "development"
    assert "analysis succeeded" in last["message"]


def test_update_task_refuses_stage_changes(store: Store) -> None:
    task_id, _ = make(store)
    with pytest.raises(StoreError, match="move_task"):
        store.update_task(task_id, stage=Stage.DONE)


def test_one_active_job_per_task(store: Store) -> None:
    task_id, _ = make(store)
    job = store.create_job(task_id, Stage.ANALYSIS)
    assert job is not None
    assert store.create_job(task_id, Stage.ANALYSIS) is None
    store.finish_job(job.id, "success")
    task = store.get_task(task_id)
    assert task is not None and not task.active_job_id
    finished = store.get_job(job.id)
    assert finished is not None and finished.state is JobState.FINISHED
    assert store.create_job(task_id, Stage.DEVELOPMENT) is not None


def test_finishing_an_old_job_never_frees_a_newer_jobs_slot(store: Store) -> None:
    task_id, _ = make(store)
    old = store.create_job(task_id, Stage.ANALYSIS)
    assert old is not None
    store.update_job(old.id, state=JobState.LOST)
    new = store.create_job(task_id, Stage.ANALYSIS)
    assert new is not None
    store.finish_job(old.id, "failure")
    task = store.get_task(task_id)
    assert task is not None and task.active_job_id == new.id


def test_lock_excludes_a_second_owner(store: Store) -> None:
    store.lock_wait_s = 0.1
    with store.issue_lock("iss-1"), pytest.raises(StoreError, match="still held"):
        # a different thread is a different owner
        errors: list[BaseException] = []

        def other() -> None:
            try:
                with store.issue_lock("iss-1"):
                    pass
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        raise errors[0]


def test_expired_lock_is_not_released_from_under_its_new_owner(store: Store) -> None:
    name = store.keys.issue_lock("iss-1")
    with store.lock(name, ttl_s=0.05):
        store.r.delete(name)  # simulate TTL expiry ...
        store.r.set(name, "someone-else")  # ... and a new owner
    assert store.r.get(name) == "someone-else"
    assert store.counters()["lock_expired"] == 1


def test_counters_are_shared_hash(store: Store) -> None:
    store.incr_counter("plane_calls")
    store.incr_counter("plane_calls", 2)
    assert store.counters() == {"plane_calls": 3}


def test_deploy_slot_is_held_by_one_task_and_freed_only_by_it(store: Store) -> None:
    assert store.take_deploy_slot("repo", "1", ttl_s=60) is None
    assert store.take_deploy_slot("repo", "1", ttl_s=60) is None  # idempotent for the holder
    assert store.take_deploy_slot("repo", "2", ttl_s=60) == "1"
    store.release_deploy_slot("repo", "2")  # not the holder: nothing happens
    assert store.take_deploy_slot("repo", "2", ttl_s=60) == "1"
    store.release_deploy_slot("repo", "1")
    assert store.take_deploy_slot("repo", "2", ttl_s=60) is None
