"""`planeflow config check` and `planeflow plane ensure-states`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from app import preflight
from app.cli.formatting import format_table, redacted_url
from app.config import Settings, load_registry
from app.domain.errors import ConfigError, PlaneflowError
from app.plane.setup import ensure_states
from app.services import Services

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
    found = preflight.problems(settings, registry)
    for problem in found:
        print(f"ERROR: {problem}")
    if found:
        print(f"{len(found)} problem(s): web, worker or scheduler would refuse to start")
    if not args.online:
        return 1 if found else 0
    services = Services(settings, registry_override=registry)
    errors = len(found)
    try:
        for project in registry.projects.values():
            try:
                states = services.resolver.resolve(project, refresh=True)
            except PlaneflowError as exc:
                print(f"{project.name}: ERROR: cannot list states: {exc}")
                errors += 1
                continue
            print(f"\n{project.name}: states")
            print(format_table([("KEY", "WANTED", "RESOLVED", "HOW"), *states.table()]))
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


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
