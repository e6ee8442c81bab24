"""Anti-dup on a real redis-server: 8 threads, then 4 OS processes x 50 attempts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading

import redis

from app.domain.stages import Stage
from app.store import Store, create_task_atomic
from tests.conftest import REPO_ROOT, RedisServer


def test_eight_threads_create_one_task(real_redis: redis.Redis, real_store: Store) -> None:
    barrier = threading.Barrier(8)
    results: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def attempt() -> None:
        barrier.wait()
        task, created = create_task_atomic(
            "plane-dup",
            "ET-099",
            "enduro",
            "feature/ET-099-x",
            Stage.ANALYSIS,
            "Dup race",
            client=real_redis,
        )
        with lock:
            results.append((task.id, created))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert [c for _, c in results].count(True) == 1
    assert len({task_id for task_id, _ in results}) == 1
    assert len(real_store.list_tasks()) == 1
    assert real_redis.zcard(real_store.keys.tasks_all) == 1


RACER = textwrap.dedent("""
    import json, sys, time
    import redis
    from app.store import create_task_atomic
    client = redis.Redis.from_url(sys.argv[1], decode_responses=True)
    while not client.exists("race:go"):
        time.sleep(0.001)
    out = []
    for i in range(50):
        task, created = create_task_atomic(
            "plane-proc", "ET-100", "enduro", "feature/ET-100-x", "analysis", "Proc race",
            client=client)
        out.append([task.id, created])
    print(json.dumps(out))
""")


def test_four_processes_fifty_attempts_create_one_task(
    redis_server: RedisServer, real_redis: redis.Redis, real_store: Store
) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, redis_server.url],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    real_redis.set("race:go", "1")
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        results.extend(json.loads(out))

    assert len(results) == 200
    assert sum(1 for _, created in results if created) == 1
    assert len({task_id for task_id, _ in results}) == 1
    tasks = real_store.list_tasks()
    assert len(tasks) == 1 and tasks[0].work_item_id == "ET-100"
