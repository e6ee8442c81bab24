"""`planeflow web | worker | scheduler | up | sandbox-plane`: the processes."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import threading
from collections.abc import Callable, Mapping

from app import preflight
from app.cli.formatting import redacted_url
from app.config import Settings, load_registry
from app.domain.errors import ConfigError, PlaneflowError
from app.store import connect

Command = Callable[[argparse.Namespace, Settings], int]


def cmd_web(args: argparse.Namespace, settings: Settings) -> int:
    from aiohttp import web as aioweb

    from app.web import DASHBOARD_NOTE, create_app

    registry = load_registry(settings.projects_file)
    preflight.require(settings, registry, preflight.WEB)
    client = connect(settings.redis_url)
    host, port = listen_address(args, settings, os.environ)
    app = create_app(settings, registry=registry, redis_client=client, listen_host=host)
    print(
        f"planeflow web on http://{host}:{port} (redis {redacted_url(settings.redis_url)}, "
        f"{len(registry.projects)} project(s)); {app[DASHBOARD_NOTE]}",
        flush=True,
    )
    # What exists now (modules, settings, the app) lives as long as the process: keep it
    # out of the collector's full passes. Measured under bench/ingest.py's load: a full
    # pass stopped the loop for ~50 ms about once per 25,000 webhooks; frozen, ~0.2 ms.
    gc.collect()
    gc.freeze()
    try:
        aioweb.run_app(
            app, host=host, port=port, print=None, access_log=None, loop=new_event_loop()
        )
    except OSError as exc:  # address in use, unknown host, no permission
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    finally:
        client.close()
    return 0


class ListenError(PlaneflowError):
    """The receiver cannot listen where it was told to."""


def listen_address(
    args: argparse.Namespace, settings: Settings, env: Mapping[str, str]
) -> tuple[str, int]:
    """`--host/--port` first; then a PaaS's `$PORT` (on all interfaces); then
    `ORCH_WEB_HOST`/`ORCH_WEB_PORT`."""
    paas = env.get("PORT", "").strip()
    if paas and not paas.isdigit():
        raise ConfigError(f"PORT={paas!r} is not a port number")
    port = args.port or (int(paas) if paas else settings.web_port)
    host = args.host or ("0.0.0.0" if paas else settings.web_host)
    return host, port


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (Linux, macOS): about twice the requests per core."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from actors.worker import reset_metrics_dir, run_worker_process, supervise

    registry = load_registry(settings.projects_file)  # fail at start, naming the field
    preflight.require(settings, registry, preflight.WORKER)
    if args.processes <= 1:
        if settings.worker_prometheus:
            reset_metrics_dir()
        return run_worker_process(settings, args.threads, args.shutdown_timeout, args.log_level)
    return supervise(
        settings,
        processes=args.processes,
        threads=args.threads,
        shutdown_timeout_s=args.shutdown_timeout,
        log_level=args.log_level,
    )


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from app.embedded import run

    return run(timeout_s=args.timeout, keep_running=args.keep_running)


def cmd_scheduler(args: argparse.Namespace, settings: Settings) -> int:
    import signal

    from actors.scheduler import Scheduler
    from app.queue import Dispatcher, make_redis_broker

    preflight.require(settings, load_registry(settings.projects_file), preflight.SCHEDULER)
    client = connect(settings.redis_url)
    broker = make_redis_broker(settings.redis_url)
    scheduler = Scheduler(settings, client, Dispatcher(broker), tick_s=args.tick)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        scheduler.run(stop)
    finally:
        broker.close()
        client.close()
    return 0


def cmd_sandbox_plane(args: argparse.Namespace, settings: Settings) -> int:
    from app.sandbox.plane_runner import (
        BOT_KEY,
        HUMAN_KEY,
        SandboxPlaneRunner,
        make_sandbox,
        seed_demo,
    )

    bot_key = args.api_key or BOT_KEY
    sandbox = make_sandbox(
        workspace=args.workspace, rate_limit=args.rate_limit or None, bot_key=bot_key
    )
    if args.seed != "none":
        seed_demo(sandbox.world, classic=args.seed == "classic")
    sandbox.sender.configure(args.webhook_url, args.webhook_secret)
    runner = SandboxPlaneRunner(sandbox, host=args.host, port=args.port).start()
    print(f"sandbox Plane at {runner.base_url}")
    print(f"  workspace slug: {args.workspace}")
    print(f"  API key (bot):   {bot_key}")
    print(f"  API key (human): {HUMAN_KEY}")
    for project in sandbox.world.projects.values():
        print(f"  project {project.identifier}: {project.id} ({len(project.items)} work items)")
    print(f"  webhooks -> {args.webhook_url or '(none)'}")
    print("Ctrl-C to stop.", flush=True)
    try:
        threading.Event().wait()
    finally:
        runner.stop()
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    webp = sub.add_parser("web", help="run the webhook receiver")
    webp.add_argument("--host", default=None, help="default: ORCH_WEB_HOST")
    webp.add_argument("--port", type=int, default=None, help="default: ORCH_WEB_PORT")
    webp.set_defaults(func=cmd_web)

    workerp = sub.add_parser("worker", help="run Dramatiq workers (graceful on SIGTERM)")
    workerp.add_argument("--processes", type=int, default=1)
    workerp.add_argument("--threads", type=int, default=4)
    workerp.add_argument(
        "--shutdown-timeout",
        type=float,
        default=25.0,
        help="seconds in-flight messages get to finish on SIGTERM",
    )
    workerp.set_defaults(func=cmd_worker)
    up = sub.add_parser(
        "up",
        help="run the whole stack embedded and watch one work item "
        "travel analysis -> done (no services needed)",
    )
    up.add_argument("--keep-running", action="store_true", help="stay up after the demo")
    up.add_argument("--timeout", type=float, default=180.0)
    up.set_defaults(func=cmd_up)

    sched = sub.add_parser("scheduler", help="run the leader-locked reconcile clock")
    sched.add_argument("--tick", type=float, default=None, help="default: ORCH_SCHEDULER_TICK_S")
    sched.set_defaults(func=cmd_scheduler)

    sp = sub.add_parser("sandbox-plane", help="run the in-repo fake Plane (API + webhooks)")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8100)
    sp.add_argument("--api-key", default=None, help="the bot's API key (default: built-in)")
    sp.add_argument("--workspace", default="acme")
    sp.add_argument("--webhook-url", default=None)
    sp.add_argument("--webhook-secret", default="")
    sp.add_argument("--seed", choices=["demo", "classic", "none"], default="demo")
    sp.add_argument("--rate-limit", type=int, default=60, help="requests/min per key; 0 = off")
    sp.set_defaults(func=cmd_sandbox_plane)
