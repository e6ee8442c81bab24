"""`planeflow reconcile | replay | explain | status | tasks`: what happened, and why."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from app.cli import live
from app.cli.formatting import format_table
from app.config import Settings, load_registry
from app.domain.errors import ConfigError, PlaneflowError
from app.domain.stages import Stage
from app.services import Services
from app.store import Store, connect

Command = Callable[[argparse.Namespace, Settings], int]


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
    if args.event_id and not results:
        raise PlaneflowError(f"no stored event {args.event_id} (see `redis-cli XRANGE pf:events`)")
    for event_id, decision in results:
        print(f"{event_id}  {decision}")
    print(f"{len(results)} event(s) replayed")
    return 0


def cmd_purge(args: argparse.Namespace, settings: Settings) -> int:
    from app.purge import parse_age, purge

    store = make_store(settings)
    report = purge(store, settings.repos_dir, parse_age(args.older_than), dry_run=args.dry_run)
    print(f"{'would purge' if args.dry_run else 'purged'} {report.summary()}")
    return 0


def cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    store = make_store(settings)
    if args.follow:
        return live.follow_timeline(store, args.work_item, sys.stdout)
    matches = [t for t in store.list_tasks() if t.work_item_id == args.work_item.upper()]
    if not matches:
        print(
            f"no task for {args.work_item} (no start trigger was ever processed)", file=sys.stderr
        )
        return 1
    for task in matches:
        live.print_header(task, sys.stdout)
        for entry in store.timeline(task.id):
            print(live.line(entry))
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from app.board import Board
    from app.queue_state import QueueState

    store = make_store(settings)
    registry = load_registry(settings.projects_file)
    board = Board(settings, store, registry, QueueState(store.r, store.keys))
    rows = [("PROJECT", "LAST WEBHOOK", "REPLAYS", "LAST PASS", "API CALLS", "WEBHOOKS")]
    for p in board.project_rows():
        calls = p["last_pass_calls"]
        rows.append(
            (
                p["name"],
                (p["last_webhook"] or "never")[:19],
                str(p["replays"]),
                (p["last_pass"] or "never")[:19],
                "-" if calls is None else str(calls),
                "SILENT?" if p["webhooks_silent"] else "ok",
            )
        )
    print(format_table(rows))
    counters = store.counters()
    print("counters: " + ", ".join(f"{k}={v}" for k, v in sorted(counters.items())))
    return 0


def cmd_tasks(args: argparse.Namespace, settings: Settings) -> int:
    store = make_store(settings)
    if args.watch:
        return live.watch_tasks(settings, store, args.interval, sys.stdout)
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


def interval(text: str) -> float:
    """A redraw interval: a number of seconds, at least 0.2."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0.2:
        raise argparse.ArgumentTypeError(f"{text} s is too short (at least 0.2)")
    return value


def make_store(settings: Settings) -> Store:
    return Store(
        connect(settings.redis_url),
        settings.keys,
        lock_ttl_s=settings.lock_ttl_s,
        lock_wait_s=settings.lock_wait_s,
    )


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rec = sub.add_parser("reconcile", help="run one reconcile pass now, in this process")
    rec.add_argument("--project", default=None, help="one project (default: all)")
    rec.set_defaults(func=cmd_reconcile)
    purgep = sub.add_parser("purge", help="remove finished tasks older than an age")
    purgep.add_argument("--older-than", required=True, help="e.g. 30d, 12h (a number: days)")
    purgep.add_argument("--dry-run", action="store_true", help="say what would go")
    purgep.set_defaults(func=cmd_purge)

    rp = sub.add_parser("replay", help="run stored webhook events through the handlers again")
    rp_which = rp.add_mutually_exclusive_group(required=True)
    rp_which.add_argument("event_id", nargs="?", help="a pf:events id, e.g. 1795534740882-0")
    rp_which.add_argument("--since", help="all events since a stream id or a unix time (ms)")
    rp.set_defaults(func=cmd_replay)

    explain = sub.add_parser("explain", help="why a work item is where it is: its decisions")
    explain.add_argument("work_item", help="e.g. ORCH-12")
    explain.add_argument(
        "--follow", "-f", action="store_true", help="then print each new decision (Ctrl-C stops)"
    )
    explain.set_defaults(func=cmd_explain)

    sub.add_parser("status", help="per-project webhook-loss meter and counters").set_defaults(
        func=cmd_status
    )

    tasks = sub.add_parser("tasks", help="list tasks from Redis")
    tasks.add_argument("--json", action="store_true", help="machine-readable output")
    tasks.add_argument("--stage", choices=[s.value for s in Stage])
    tasks.add_argument("--watch", "-w", action="store_true", help="a live board (Ctrl-C stops)")
    tasks.add_argument(
        "--interval", type=interval, default=2.0, help="seconds between redraws (--watch)"
    )
    tasks.set_defaults(func=cmd_tasks)
