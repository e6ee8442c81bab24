"""What each process refuses to start with: one list, so `config check` says the same.

`problems(settings, registry, roles)` names every setting that would make a process do
nothing useful — webhooks all refused, Plane or Gitea calls all unauthorised — as one
sentence each. `web` checks the receiver's, `worker` and `scheduler` the Plane and
forge ones, and `planeflow config check` all of them.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable

from app.config import Settings
from app.domain.errors import ConfigError
from app.projects import Registry

WEB, WORKER, SCHEDULER = "web", "worker", "scheduler"
ALL = (WEB, WORKER, SCHEDULER)


def problems(settings: Settings, registry: Registry, roles: Iterable[str] = ALL) -> list[str]:
    wanted = set(roles)
    found: list[str] = []
    if WEB in wanted:
        found += _receiver(settings, registry)
    if wanted & {WORKER, SCHEDULER}:
        found += _plane_keys(settings, registry)
    if WORKER in wanted:
        found += _forge(settings, registry)
        found += _agent_user(settings)
    return found


def require(settings: Settings, registry: Registry, role: str) -> None:
    """Raise ConfigError naming every problem `role` would have."""
    found = problems(settings, registry, [role])
    if found:
        raise ConfigError("; ".join(found))


def _receiver(settings: Settings, registry: Registry) -> list[str]:
    found = []
    default = settings.plane_webhook_secret.get_secret_value()
    empty = [
        p.name
        for p in registry.projects.values()
        if p.webhook_secret is not None and not p.webhook_secret.get_secret_value()
    ]
    if empty:
        found.append(
            f"project(s) {', '.join(empty)} have an empty webhook_secret: every Plane "
            "webhook for them would be refused (401)"
        )
    bare = [p.name for p in registry.projects.values() if p.webhook_secret is None]
    if bare and not default:
        found.append(
            "ORCH_PLANE_WEBHOOK_SECRET is not set and project(s) "
            f"{', '.join(bare)} have no webhook_secret: every Plane webhook "
            "would be refused (401)"
        )
    gitea = [p.name for p in registry.projects.values() if p.forge == "gitea"]
    if gitea and not settings.gitea_webhook_secret.get_secret_value():
        found.append(
            f"ORCH_GITEA_WEBHOOK_SECRET is not set and project(s) {', '.join(gitea)} use "
            "Gitea: every Gitea webhook would be refused (401)"
        )
    return found


def _plane_keys(settings: Settings, registry: Registry) -> list[str]:
    if settings.plane_api_token.get_secret_value():
        return []
    keyless = [p.name for p in registry.projects.values() if not p.plane_api_token]
    if not keyless:
        return []
    return [
        f"ORCH_PLANE_API_TOKEN is not set and project(s) {', '.join(keyless)} have no "
        "plane_api_token: every Plane call would be refused"
    ]


def _forge(settings: Settings, registry: Registry) -> list[str]:
    gitea = [p.name for p in registry.projects.values() if p.forge == "gitea"]
    if gitea and not settings.gitea_token.get_secret_value():
        return [
            f"ORCH_GITEA_TOKEN is not set and project(s) {', '.join(gitea)} use Gitea: "
            "no pull request could be opened or merged"
        ]
    return []


def _agent_user(settings: Settings) -> list[str]:
    name = settings.agent_user
    if not name:
        return []
    try:
        pwd.getpwnam(name)
    except KeyError:
        return [f"ORCH_AGENT_USER={name!r}: no such unix user"]
    if os.geteuid() != 0:
        return [f"ORCH_AGENT_USER={name!r} needs the worker to start as root (to run agents as it)"]
    return []
