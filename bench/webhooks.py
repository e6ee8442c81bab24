"""Receiver throughput: signed Plane webhooks into a real Redis, end to end over HTTP.

    .venv/bin/python -m bench.webhooks [--requests 2000] [--threads 8]

Prints accepted requests per second and latency percentiles (each request is verified,
deduplicated, appended to pf:events and enqueued before the answer).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from pydantic import SecretStr

from app.config import Settings
from app.embedded import EmbeddedRedis
from app.plane.webhooks import signature
from app.projects import Registry
from app.queue import Dispatcher, make_redis_broker
from app.sandbox.serve import ThreadedServer
from app.store import connect
from app.web import create_app

SECRET = "bench-secret"
PROJECT = "5f0c1d2e-0000-4000-8000-00000000de00"


def body(n: int) -> bytes:
    return json.dumps(
        {
            "event": "issue",
            "action": "updated",
            "webhook_id": "w",
            "workspace_id": "ws",
            "data": {
                "id": f"item-{n}",
                "project": PROJECT,
                "state": {"id": "s", "group": "started"},
            },
            "activity": {
                "field": "state",
                "new_value": "s",
                "old_value": None,
                "actor": {"id": "human"},
            },
        }
    ).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pf-bench-"))
    redis = EmbeddedRedis(workdir).start()
    settings = Settings(
        redis_url=redis.url, plane_webhook_secret=SecretStr(SECRET), spool_dir=workdir / "spool"
    )
    registry = Registry.model_validate(
        {
            "projects": {
                "demo": {"plane_project_id": PROJECT, "repo": "r", "work_item_prefix": "DEMO"}
            }
        }
    )
    client = connect(redis.url)
    broker = make_redis_broker(redis.url)
    server = ThreadedServer(
        create_app(settings, registry=registry, redis_client=client, dispatcher=Dispatcher(broker))
    ).start()
    bodies = [body(n) for n in range(args.requests)]
    latencies: list[float] = []

    def send(chunk: list[bytes]) -> None:
        with httpx.Client(base_url=server.url) as http:
            for raw in chunk:
                t0 = time.perf_counter()
                resp = http.post(
                    "/webhooks/plane",
                    content=raw,
                    headers={"X-Plane-Signature": signature(SECRET, raw)},
                )
                latencies.append(time.perf_counter() - t0)
                assert resp.status_code == 202, resp.text

    chunks = [bodies[i :: args.threads] for i in range(args.threads)]
    started = time.perf_counter()
    with ThreadPoolExecutor(args.threads) as pool:
        list(pool.map(send, chunks))
    elapsed = time.perf_counter() - started
    stored = client.xlen(settings.keys.events)
    queued = client.llen("dramatiq:events")
    latencies.sort()
    print(
        f"receiver ({redis.kind}): {args.requests} webhooks from {args.threads} threads "
        f"in {elapsed:.2f}s = {args.requests / elapsed:.0f} req/s"
    )
    print(
        f"latency p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms"
    )
    print(f"pf:events {stored}, queued process_event messages {queued}")
    server.stop()
    broker.close()
    redis.stop()


if __name__ == "__main__":
    main()
