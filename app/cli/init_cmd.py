"""`planeflow init`: a starter `projects.toml` and `.env` for your Plane (or the sandbox).

`.env` holds the settings (honcho and docker compose read it; `set -a; . ./.env`
exports it to a shell), with a fresh webhook secret; `projects.toml` one project wired
to the sample agents and gate of `examples/`. With `--sandbox` every value is the
sandbox Plane's (`planeflow sandbox-plane`) and a local git repository is made for the
demo project, so the stack runs with nothing else. Existing files are never overwritten
without `--force`.
"""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path
from typing import Any

from app.config import Settings
from app.domain.errors import ConfigError
from app.projects import registry_toml
from app.sandbox.plane_runner import BOT_KEY, DEMO_PROJECT_ID

SANDBOX_URL = "http://127.0.0.1:8100"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    target = Path(args.dir).resolve()
    target.mkdir(parents=True, exist_ok=True)
    registry, env_file = target / "projects.toml", target / ".env"
    existing = [p.name for p in (registry, env_file) if p.exists()]
    if existing and not args.force:
        raise ConfigError(f"{', '.join(existing)} already in {target} (--force replaces them)")
    values = _sandbox_values(target, args.plane_url) if args.sandbox else _plane_values(args)
    values["redis_url"] = args.redis_url
    registry.write_text(_registry(values), encoding="utf-8")
    env_file.write_text(_env(values, registry), encoding="utf-8")
    print(f"wrote {registry} and {env_file}")
    if values["repo_made"]:
        print(f"made a git repository for the demo project: {values['repo']}")
    print("next: `set -a; . ./.env; set +a` (or let honcho read .env), then start the Procfile")
    print("the dashboard (web's /) asks for ORCH_DASHBOARD_TOKEN, written in .env")
    return 0


def _sandbox_values(target: Path, plane_url: str | None) -> dict[str, Any]:
    from app.embedded import make_bare_repo  # (not at import: it pulls in the receiver)

    repo = target / "var" / "demo-remote.git"
    made = not repo.exists()
    if made:
        repo = make_bare_repo(target / "var")
    return {
        "plane_url": plane_url or SANDBOX_URL,
        "workspace": "acme",
        "api_token": BOT_KEY,
        "project_id": DEMO_PROJECT_ID,
        "prefix": "DEMO",
        "repo": str(repo),
        "repo_made": made,
    }


def _plane_values(args: argparse.Namespace) -> dict[str, Any]:
    missing = [
        f"--{name.replace('_', '-')}"
        for name in ("plane_url", "workspace", "api_token", "project_id", "repo")
        if not getattr(args, name)
    ]
    if missing:
        raise ConfigError(f"init needs {', '.join(missing)} (or --sandbox)")
    return {
        "plane_url": args.plane_url,
        "workspace": args.workspace,
        "api_token": args.api_token,
        "project_id": args.project_id,
        "prefix": args.prefix,
        "repo": args.repo,
        "repo_made": False,
    }


def _registry(values: dict[str, Any]) -> str:
    agents = {
        role: {"argv": ["python3", str(EXAMPLES / "agents" / f"{role}.py")], "time_limit_s": 600}
        for role in ("analyst", "developer", "reviewer")
    }
    project = {
        "plane_project_id": values["project_id"],
        "repo": values["repo"],
        "work_item_prefix": values["prefix"],
        "forge": "git",
        "default_branch": "main",
        "agents": agents,
        "gates": [{"name": "flag", "argv": ["python3", str(EXAMPLES / "gates/check_flag.py")]}],
        "deploy": "none",
    }
    head = "# Written by `planeflow init`: one project, the sample agents. Edit freely.\n"
    return head + registry_toml({values["prefix"].lower(): project})


def _env(values: dict[str, Any], registry: Path) -> str:
    lines = [
        "# Written by `planeflow init`. planeflow reads ORCH_* from the environment.",
        f"ORCH_REDIS_URL={values['redis_url']}",
        f"ORCH_PLANE_BASE_URL={values['plane_url']}",
        f"ORCH_PLANE_WORKSPACE={values['workspace']}",
        f"ORCH_PLANE_API_TOKEN={values['api_token']}",
        f"ORCH_PLANE_WEBHOOK_SECRET={secrets.token_hex(24)}",
        f"ORCH_PROJECTS_FILE={registry}",
        "# The dashboard on web's port asks for this token (log in with it).",
        f"ORCH_DASHBOARD_TOKEN={secrets.token_urlsafe(24)}",
    ]
    return "\n".join(lines) + "\n"


def add_parser(sub: Any) -> None:
    init = sub.add_parser("init", help="write a starter projects.toml and .env")
    init.add_argument("--dir", default=".", help="where to write them (default: here)")
    init.add_argument("--sandbox", action="store_true", help="for the sandbox Plane")
    init.add_argument("--plane-url", help="your Plane, e.g. https://plane.example.com")
    init.add_argument("--workspace", help="the workspace slug (in Plane's URLs)")
    init.add_argument("--api-token", help="the bot user's API token")
    init.add_argument("--project-id", help="the Plane project's id (UUID)")
    init.add_argument("--prefix", default="PROJ", help="the project's work item prefix")
    init.add_argument("--repo", help="the project's git repository (URL or path)")
    init.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    init.add_argument("--force", action="store_true", help="replace existing files")
    init.set_defaults(func=cmd_init)
