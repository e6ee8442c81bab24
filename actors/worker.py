"""`planeflow worker`: Dramatiq workers run in-process, with graceful shutdown.

The `dramatiq` CLI's children exit at once when SIGTERM reaches the whole process
group (what systemd and PaaS platforms send), stranding in-flight messages until the
slow dead-worker recovery. Here each worker process runs `dramatiq.Worker` itself and
handles SIGTERM/SIGINT by `Worker.stop()`: running messages finish (or, past the grace
period, are left to the heartbeat recovery) and prefetched ones are requeued. With
`--processes N > 1` a supervisor starts N such processes, restarts one that dies,
and forwards a signal it receives alone to all of them.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import dramatiq

from actors import runtime
from actors.broker import setup_broker
from actors.registry import register_all
from app import logs
from app.config import Settings
from app.domain.errors import ConfigError
from app.queue import Dispatcher
from app.services import Services
from app.store import connect

log = logging.getLogger(__name__)


def start_worker(
    settings: Settings,
    *,
    threads: int,
    client: Any = None,
    prometheus: bool = False,
    worker_timeout_ms: int = 200,
    services: Services | None = None,
) -> tuple[dramatiq.Worker, Services]:
    """Set up broker, services and actors; start a Worker (returned running).

    The broker gets `process_boot` as under Dramatiq's own CLI: middleware such as
    Prometheus sets itself up then (without it, every message crashed its hooks).
    """
    broker = setup_broker(settings, client=client, prometheus=prometheus)
    broker.emit_after("process_boot")
    services = services or Services(settings, redis=None)
    services.broker = broker
    services.__dict__["dispatcher"] = Dispatcher(broker)
    runtime.init(services)
    register_all(broker)
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=worker_timeout_ms)
    # Long jobs want prefetch = threads, so a busy process does not sit on queued work.
    worker.queue_prefetch = threads
    worker.start()
    return worker, services


def run_worker_process(
    settings: Settings,
    threads: int,
    shutdown_timeout_s: float,
    log_level: str = "INFO",
    expose_metrics: bool = True,
) -> int:
    """One worker process until SIGTERM/SIGINT; then a graceful stop.

    With `ORCH_WORKER_PROMETHEUS` every worker process records Dramatiq's metrics (in
    prometheus-client's multiprocess files); the one with `expose_metrics` also serves
    them on `dramatiq_prom_host:dramatiq_prom_port` (default 0.0.0.0:9191).
    """
    logs.setup(log_level, settings.log_format)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info(
            "worker %d: %s received, shutting down gracefully",
            multiprocessing.current_process().pid or 0,
            signal.Signals(signum).name,
        )
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker, services = start_worker(
        settings, threads=threads, prometheus=settings.worker_prometheus
    )
    if settings.worker_prometheus and expose_metrics:
        serve_metrics(settings)
    log.info("worker ready: %d thread(s), queues %s", threads, sorted(worker.broker.queues))
    stop.wait()
    worker.stop(timeout=int(shutdown_timeout_s * 1000))
    worker.broker.close()
    services.close()
    log.info("worker stopped")
    return 0


def reset_metrics_dir() -> None:
    """Forget the multiprocess metric files of earlier runs (dead pids would count)."""
    from dramatiq.middleware.prometheus import DB_PATH

    for stale in Path(DB_PATH).glob("*.db"):
        stale.unlink(missing_ok=True)


def serve_metrics(settings: Settings) -> None:
    """Dramatiq's metrics (every worker process's, from prometheus-client's multiprocess
    files) and planeflow's own (tasks per stage, queue depth, Plane budget, job durations,
    webhook lag, the shared counters: read from Redis at each scrape), from a thread of
    this process on `dramatiq_prom_host:dramatiq_prom_port` (default 0.0.0.0:9191)."""
    from dramatiq.middleware.prometheus import DB_PATH, HTTP_HOST, HTTP_PORT
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    from app.metrics import PipelineMetrics, SharedCounters

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=DB_PATH)  # type: ignore[no-untyped-call]
    client = connect(settings.redis_url)
    keys = settings.keys
    registry.register(SharedCounters(client, keys.counters, keys.webhooks_last))
    registry.register(PipelineMetrics(client, keys))
    try:
        start_http_server(HTTP_PORT, addr=HTTP_HOST, registry=registry)
    except OSError as exc:  # another worker on this host already serves them
        raise ConfigError(
            f"cannot serve the worker's metrics on {HTTP_HOST}:{HTTP_PORT}: "
            f"{exc.strerror or exc} (set dramatiq_prom_port for a second worker on this host, "
            "or ORCH_WORKER_PROMETHEUS=false)"
        ) from exc
    log.info("worker metrics on http://%s:%d/", HTTP_HOST, HTTP_PORT)


def supervise(
    settings: Settings, *, processes: int, threads: int, shutdown_timeout_s: float, log_level: str
) -> int:
    """Run N worker processes; restart crashed ones; stop all on a signal."""
    ctx = multiprocessing.get_context("spawn")
    stopping = threading.Event()
    if settings.worker_prometheus:
        reset_metrics_dir()

    def spawn(index: int) -> Any:
        proc = ctx.Process(
            target=run_worker_process,
            name=f"planeflow-worker-{index}",
            args=(settings, threads, shutdown_timeout_s, log_level, index == 0),
        )
        proc.start()
        return proc

    children = [spawn(i) for i in range(processes)]

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stopping.is_set():
            stopping.set()
            for child in children:  # a signal sent to us alone reaches the children too
                if child.is_alive() and child.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping.is_set():
        for i, child in enumerate(children):
            if not child.is_alive() and not stopping.is_set():
                log.error("worker process %s exited with %s; restarting", child.pid, child.exitcode)
                time.sleep(1)
                children[i] = spawn(i)
        stopping.wait(1)
    for child in children:
        child.join(shutdown_timeout_s + 10)
    return 0
