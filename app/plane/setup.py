"""Operator set-up of a project's Plane states (`planeflow plane ensure-states`)."""

from __future__ import annotations

from dataclasses import dataclass

from app.plane.client import PlaneClient
from app.plane.status import STATE_STYLE, ProjectStates, StateResolver
from app.projects import Project


@dataclass(frozen=True)
class EnsureResult:
    created: list[str]  # state names created (or that would be, with dry_run)
    states: ProjectStates


def ensure_states(
    client: PlaneClient, resolver: StateResolver, project: Project, *, dry_run: bool = False
) -> EnsureResult:
    """Create the project's missing pipeline states; creating is idempotent (409 = exists)."""
    current = resolver.resolve(project, refresh=True)
    missing = current.missing()
    names = [project.state_name(key) for key in missing]
    if dry_run or not missing:
        return EnsureResult(names, current)
    for key in missing:
        group, color = STATE_STYLE[key]
        client.create_state(project.plane_project_id, project.state_name(key), group, color)
    return EnsureResult(names, resolver.resolve(project, refresh=True))
