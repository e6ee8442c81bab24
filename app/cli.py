"""The `planeflow` command: process entry points and operator tools."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import redis

from app import logs
from app.config import Settings, load_registry, load_settings
from app.domain.errors import ConfigError, PlaneflowError
from app.domain.stages import Stage
from app.plane.setup import ensure_states
from app.projects import Registry
from app.reconcile_state import ReconcileStateStore
from app.services import Services
from app.store import Store, connect

Command = Callable[[argparse.Namespace, Settings], int]


def cmd_config_check(args: argparse.Namespace, settings: Settings) -> int:
    path = Path(args.projects) if args.projects else settings.projects_file
    registry = load_registry(path)
    print(
        f"settings: ok (redis {redacted_url(settings.redis_url)}, "
        f"plane {settings.plane_base_url}, workspace {settings.plane_workspace!r})"
    )
    print(f"registry: {path}: {len(registry.projects)} project(s)")
    rows = [("NAME", "PREFIX", "PLANE PROJECT", "FORGE", "REPO")]
    rows += [
        (p.name, p.work_item_prefix, p.plane_project_id, p.forge, p.repo)
        for p in registry.projects.values()
    ]
    print(format_table(rows))
    if not args.online:
        return 0
    services = Services(settings, registry_override=registry)
    errors = 0
    try:
        for project in registry.projects.values():
            try:
                states = services.resolver.resolve(project, refresh=True)
            except PlaneflowError as exc:
                print(f"{project.name}: ERROR: cannot list states: {exc}")
                errors += 1
                continue
            for key in ("approved", "rejected"):
                if states.direct(key) is None:
                    errors += 1
                    print(
                        f"{project.name}: ERROR: no {project.state_name(key)!r} state: "
                        "human verdicts cannot be taken (run `planeflow plane "
                        f"ensure-states --project {project.name}`)"
                    )
            aliased = [k for k in states.missing() if states.resolve(k)]
            if aliased:
                print(f"{project.name}: note: aliased to base statuses: {', '.join(aliased)}")
    finally:
        services.close()
    return 1 if errors else 0


def cmd_ensure_states(args: argparse.Namespace, settings: Settings) -> int:
    services = Services(settings)
    try:
        project = services.registry.get(args.project)
        if project is None:
            raise ConfigError(
                f"{settings.projects_file}: no project {args.project!r} "
                f"(known: {', '.join(services.registry.projects)})"
            )
        result = ensure_states(services.plane, services.resolver, project, dry_run=args.dry_run)
    finally:
        services.close()
    verb = "would create" if args.dry_run else "created"
    print(
        f"{project.name}: {verb} {len(result.created)} state(s)"
        + (f": {', '.join(result.created)}" if result.created else "")
    )
    rows = [("KEY", "WANTED NAME", "PLANE STATE", "HOW"), *result.states.table()]
    print(format_table(rows))
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


def check_webhook_secrets(settings: Settings, registry: Registry) -> None:
    if settings.plane_webhook_secret.get_secret_value():
        return
    bare = [p.name for p in registry.projects.values() if p.webhook_secret is None]
    if bare:
        raise ConfigError(
            "ORCH_PLANE_WEBHOOK_SECRET is not set and project(s) "
            f"{', '.join(bare)} have no webhook_secret: every Plane webhook "
            "would be refused (401)"
        )


def cmd_web(args: argparse.Namespace, settings: Settings) -> int:
    from aiohttp import web as aioweb

    from app.web import create_app

    registry = load_registry(settings.projects_file)
    check_webhook_secrets(settings, registry)
    client = connect(settings.redis_url)
    app = create_app(settings, registry=registry, redis_client=client)
    host, port = args.host or settings.web_host, args.port or settings.web_port
    print(
        f"planeflow web on http://{host}:{port} (redis {redacted_url(settings.redis_url)}, "
        f"{len(registry.projects)} project(s))",
        flush=True,
    )
    try:
        aioweb.run_app(
            app, host=host, port=port, print=None, access_log=None, loop=new_event_loop()
        )
    finally:
        client.close()
    return 0


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (Linux, macOS): about twice the requests per core."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from actors.worker import reset_metrics_dir, run_worker_process, supervise

    load_registry(settings.projects_file)  # fail at start, naming the field
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


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    services = Services(settings)
    try:
        reconciler = services.reconciler
        if args.project:
            project = services.registry.get(args.project)
            if project is None:
                raise ConfigError(f"no project {args.project!r} in the registry")
            reports = [reconciler.reconcile_project(project)]
        else:
            reports = reconciler.reconcile_plane_once()
    finally:
        services.close()
    for report in reports:
        print(report.summary())
    return 1 if any(r.error for r in reports) else 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from app.events import replay

    services = Services(settings)
    try:
        results = replay(
            services.store,
            services.registry,
            services.events,
            event_id=args.event_id,
            since=args.since,
        )
    finally:
        services.close()
    for event_id, decision in results:
        print(f"{event_id}  {decision}")
    print(f"{len(results)} event(s) replayed")
    return 0


def cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    store = make_store(settings)
    matches = [t for t in store.list_tasks() if t.work_item_id == args.work_item.upper()]
    if not matches:
        print(
            f"no task for {args.work_item} (no start trigger was ever processed)", file=sys.stderr
        )
        return 1
    for task in matches:
        blocked = f", blocked: {task.blocked_reason}" if task.blocked_reason else ""
        print(
            f"{task.work_item_id} (task {task.id}, {task.project}): "
            f"stage {task.stage.value}{blocked}"
        )
        for entry in store.timeline(task.id):
            print(f"  {entry['ts'][:19]}  {entry['kind']:<10} {entry['message']}")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    store = make_store(settings)
    registry = load_registry(settings.projects_file)
    counters = store.counters()
    reconcile = ReconcileStateStore(store.r, store.keys)
    last_hooks = reconcile.last_webhooks()
    rows = [("PROJECT", "LAST WEBHOOK", "REPLAYS", "LAST PASS", "API CALLS", "WEBHOOKS")]
    for name in registry.projects:
        state = reconcile.get(name)
        rows.append(
            (
                name,
                last_hooks.get(name, "never")[:19],
                str(counters.get(f"replays:{name}", 0)),
                (state.last_pass_at or "never")[:19],
                "-" if state.last_api_calls is None else str(state.last_api_calls),
                "SILENT?" if state.webhooks_silent else "ok",
            )
        )
    print(format_table(rows))
    print("counters: " + ", ".join(f"{k}={v}" for k, v in sorted(counters.items())))
    return 0


def cmd_tasks(args: argparse.Namespace, settings: Settings) -> int:
    store = make_store(settings)
    tasks = store.list_tasks(Stage(args.stage) if args.stage else None)
    if args.json:
        print(json.dumps([t.model_dump(mode="json") for t in tasks], indent=2))
        return 0
    rows = [("ID", "WORK ITEM", "STAGE", "PROJECT", "BRANCH", "ACTIVE JOB", "UPDATED")]
    rows += [
        (
            t.id,
            t.work_item_id,
            t.stage.value,
            t.project,
            t.branch,
            t.active_job_id or "-",
            t.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
        for t in tasks
    ]
    print(format_table(rows))
    print(f"{len(tasks)} task(s)")
    return 0


def make_store(settings: Settings) -> Store:
    return Store(
        connect(settings.redis_url),
        settings.keys,
        lock_ttl_s=settings.lock_ttl_s,
        lock_wait_s=settings.lock_wait_s,
    )


def redacted_url(url: str) -> str:
    """Hide a password in a redis:// URL before printing it."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def format_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="planeflow", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

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

    rec = sub.add_parser("reconcile", help="run one reconcile pass now, in this process")
    rec.add_argument("--project", default=None, help="one project (default: all)")
    rec.set_defaults(func=cmd_reconcile)

    rp = sub.add_parser("replay", help="run stored webhook events through the handlers again")
    rp_which = rp.add_mutually_exclusive_group(required=True)
    rp_which.add_argument("event_id", nargs="?", help="a pf:events id, e.g. 1795534740882-0")
    rp_which.add_argument("--since", help="all events since a stream id or a unix time (ms)")
    rp.set_defaults(func=cmd_replay)

    explain = sub.add_parser("explain", help="why a work item is where it is: its decisions")
    explain.add_argument("work_item", help="e.g. ORCH-12")
    explain.set_defaults(func=cmd_explain)

    sub.add_parser("status", help="per-project webhook-loss meter and counters").set_defaults(
        func=cmd_status
    )

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

    plane = sub.add_parser("plane", help="Plane tools")
    plane_sub = plane.add_subparsers(dest="plane_command", required=True)
    ens = plane_sub.add_parser("ensure-states", help="create a project's missing states")
    ens.add_argument("--project", required=True, help="project name in the registry")
    ens.add_argument("--dry-run", action="store_true")
    ens.set_defaults(func=cmd_ensure_states)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate settings and the project registry")
    check.add_argument("--projects", help="registry file (default: ORCH_PROJECTS_FILE)")
    check.add_argument(
        "--online", action="store_true", help="also resolve every project's states in Plane"
    )
    check.set_defaults(func=cmd_config_check)

    tasks = sub.add_parser("tasks", help="list tasks from Redis")
    tasks.add_argument("--json", action="store_true", help="machine-readable output")
    tasks.add_argument("--stage", choices=[s.value for s in Stage])
    tasks.set_defaults(func=cmd_tasks)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.log_level)
    settings = Settings.model_construct(redis_url="")
    try:
        settings = load_settings()
        result: int = args.func(args, settings)
        return result
    except PlaneflowError as exc:
        print(f"planeflow: error: {exc}", file=sys.stderr)
        return 1
    except redis.ConnectionError as exc:
        print(
            f"planeflow: error: Redis unreachable at "
            f"{redacted_url(settings.redis_url)}: {exc} (set ORCH_REDIS_URL)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
