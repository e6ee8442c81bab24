"""The `planeflow` command: process entry points and operator tools."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import redis

from app import logs
from app.config import Settings, load_registry, load_settings
from app.domain.errors import PlaneflowError
from app.domain.stages import Stage
from app.store import Store, connect

Command = Callable[[argparse.Namespace, Settings], int]


def _not_yet(what: str, issue: str) -> Command:
    def run(args: argparse.Namespace, settings: Settings) -> int:
        print(f"planeflow {what}: not available in this build yet (arrives with {issue}); "
              "nothing was started.", file=sys.stderr)
        return 2
    return run


def cmd_config_check(args: argparse.Namespace, settings: Settings) -> int:
    path = Path(args.projects) if args.projects else settings.projects_file
    registry = load_registry(path)
    print(f"settings: ok (redis {redacted_url(settings.redis_url)}, "
          f"plane {settings.plane_base_url}, workspace {settings.plane_workspace!r})")
    print(f"registry: {path}: {len(registry.projects)} project(s)")
    rows = [("NAME", "PREFIX", "PLANE PROJECT", "FORGE", "REPO")]
    rows += [(p.name, p.work_item_prefix, p.plane_project_id, p.forge, p.repo)
             for p in registry.projects.values()]
    print(format_table(rows))
    return 0


def cmd_tasks(args: argparse.Namespace, settings: Settings) -> int:
    store = make_store(settings)
    tasks = store.list_tasks(Stage(args.stage) if args.stage else None)
    if args.json:
        print(json.dumps([t.model_dump(mode="json") for t in tasks], indent=2))
        return 0
    rows = [("ID", "WORK ITEM", "STAGE", "PROJECT", "BRANCH", "ACTIVE JOB", "UPDATED")]
    rows += [(t.id, t.work_item_id, t.stage.value, t.project, t.branch,
              t.active_job_id or "-", t.updated_at.strftime("%Y-%m-%d %H:%M:%S"))
             for t in tasks]
    print(format_table(rows))
    print(f"{len(tasks)} task(s)")
    return 0


def make_store(settings: Settings) -> Store:
    return Store(connect(settings.redis_url), settings.keys,
                 lock_ttl_s=settings.lock_ttl_s, lock_wait_s=settings.lock_wait_s)


def redacted_url(url: str) -> str:
    """Hide a password in a redis:// URL before printing it."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def format_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
                     .rstrip() for row in rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="planeflow", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("web", help="run the webhook receiver").set_defaults(
        func=_not_yet("web", "the receiver issue"))
    sub.add_parser("worker", help="run Dramatiq workers").set_defaults(
        func=_not_yet("worker", "the receiver issue"))
    sub.add_parser("scheduler", help="run the leader-locked reconcile clock").set_defaults(
        func=_not_yet("scheduler", "the reconciler issue"))

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate settings and the project registry")
    check.add_argument("--projects", help="registry file (default: ORCH_PROJECTS_FILE)")
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
        print(f"planeflow: error: Redis unreachable at "
              f"{redacted_url(settings.redis_url)}: {exc} (set ORCH_REDIS_URL)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
