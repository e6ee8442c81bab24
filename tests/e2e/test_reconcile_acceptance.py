"""Reconciler acceptance on a real Redis with a real worker and the sandbox Plane."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import redis

from actors.scheduler import Scheduler
from actors.worker import start_worker
from app.config import Settings
from app.queue import Dispatcher, make_redis_broker
from app.sandbox.plane_runner import SandboxPlaneRunner
from app.services import Services
from tests.conftest import RedisServer
from tests.e2e.conftest import wait_for
from tests.helpers import SECRET, demo_project, first_item, move, plane_delivery, registry, settings


def test_lost_webhook_is_replayed_once_even_if_it_arrives_late(
    worker: Services,
    sandbox_plane: SandboxPlaneRunner,
) -> None:
    # the web process is down: the sandbox cannot deliver (connection refused, retried, lost)
    sandbox_plane.sandbox.sender.configure("http://127.0.0.1:9/webhooks/plane", SECRET)
    item = first_item(sandbox_plane)
    move(sandbox_plane, item, "To Analyse")
    sandbox_plane.drain_webhooks()
    assert sandbox_plane.sandbox.sender.sent[-1].status is None  # lost
    assert worker.store.get_task_by_issue(item.id) is None

    worker.settings.reconcile_grace_s = 1
    project = worker.registry.projects["demo"]
    early = worker.reconciler.reconcile_project(project)
    assert early.skipped["within grace"] == 1  # delayed, not yet lost
    time.sleep(1.2)
    late = worker.reconciler.reconcile_project(project)
    assert late.replayed == 1
    task = worker.store.get_task_by_issue(item.id)
    assert task is not None

    # ... and then the webhook turns up after all: processed, changes nothing
    body, _ = plane_delivery(sandbox_plane, demo_project(sandbox_plane), item)
    worker.events.process(
        {
            "project_id": project.plane_project_id,
            "issue_id": item.id,
            "actor_id": "human",
            "event_id": "late-1",
        }
    )
    assert len(worker.store.list_tasks()) == 1
    timeline = worker.store.timeline(task.id)
    assert sum(e["kind"] == "created" for e in timeline) == 1
    assert "reconciler replay" in timeline[1]["message"]
    assert body  # the late delivery was a real one


def test_two_schedulers_make_one_pass_per_interval(
    tmp_path: Path,
    redis_server: RedisServer,
    real_redis: redis.Redis,
    sandbox_plane: SandboxPlaneRunner,
) -> None:
    cfg: Settings = settings(
        tmp_path,
        redis_url=redis_server.url,
        plane_url=sandbox_plane.base_url,
        plane_rate_per_min=100_000,
        reconcile_interval_s=1,
    )
    services = Services(cfg, registry_override=registry())
    w, services = start_worker(
        cfg, threads=4, services=services, client=redis.Redis.from_url(cfg.redis_url)
    )
    brokers = [make_redis_broker(cfg.redis_url) for _ in range(2)]
    schedulers = [
        Scheduler(
            cfg,
            redis.Redis.from_url(cfg.redis_url, decode_responses=True),
            Dispatcher(b),
            tick_s=0.2,
            name=n,
        )
        for b, n in zip(brokers, ("a", "b"), strict=True)
    ]
    stop = threading.Event()
    threads = [threading.Thread(target=s.run, args=(stop,)) for s in schedulers]
    try:
        started = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(4.1)
        stop.set()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        state = lambda: real_redis.hgetall(cfg.keys.reconcile_state("demo"))  # noqa: E731
        wait_for(lambda: state().get("passes"), 10, "a pass")
        time.sleep(0.5)  # let the last queued pass finish
        passes = int(state()["passes"])
        leaders = [s.name for s in schedulers if s.ticks_enqueued]
        assert len(leaders) == 1  # one scheduler acted, the other stood by
        # one pass per 1 s interval (not two): at most elapsed/interval + 1
        assert 2 <= passes <= int(elapsed) + 1, (passes, elapsed)
    finally:
        w.stop(timeout=10_000)
        w.broker.close()
        services.close()
        for b in brokers:
            b.close()
