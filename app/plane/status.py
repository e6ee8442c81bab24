"""Layer B, indication: which Plane state mirrors a stage, per project.

Logical status keys are resolved to state ids per project from the states API
(cached in Redis with a TTL). A key whose state does not exist in a project falls
back along ALIASES to a base key *of the same project*, so a project with only the
classic statuses keeps working. Trigger keys (start, verdict, cancel) are read from
the same resolution; `approved` / `rejected` never alias, so a project without them
cannot take a verdict rather than mistaking another state for one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from app.domain.stages import Stage
from app.plane.client import PlaneClient
from app.plane.models import PlaneState
from app.projects import DEFAULT_STATE_NAMES, Project

log = logging.getLogger(__name__)

LOGICAL_KEYS = tuple(DEFAULT_STATE_NAMES)
ALIASES: dict[str, str] = {
    "to_analyse": "in_progress",
    "analysis": "in_progress",
    "quality_gate": "in_progress",
    "code_review": "in_progress",
    "awaiting_deploy": "approved",
    "deploying": "approved",
    "monitoring": "done",
}
# Plane group and colour of each key's state when `plane ensure-states` creates it.
STATE_STYLE: dict[str, tuple[str, str]] = {
    "to_analyse": ("unstarted", "#3B82F6"),
    "analysis": ("started", "#8B5CF6"),
    "in_progress": ("started", "#F59E0B"),
    "quality_gate": ("started", "#06B6D4"),
    "code_review": ("started", "#6366F1"),
    "approved": ("started", "#22C55E"),
    "rejected": ("started", "#EF4444"),
    "awaiting_deploy": ("started", "#84CC16"),
    "deploying": ("started", "#0EA5E9"),
    "monitoring": ("started", "#14B8A6"),
    "done": ("completed", "#16A34A"),
    "blocked": ("started", "#DC2626"),
    "cancelled": ("cancelled", "#9CA3AF"),
}
STAGE_STATUS_KEY: dict[Stage, str] = {
    Stage.ANALYSIS: "analysis",
    Stage.DEVELOPMENT: "in_progress",
    Stage.QUALITY_GATE: "quality_gate",
    Stage.REVIEW: "code_review",
    Stage.MERGE: "approved",
    Stage.AWAITING_DEPLOY: "awaiting_deploy",
    Stage.DEPLOYING: "deploying",
    Stage.MONITORING: "monitoring",
    Stage.DONE: "done",
    Stage.BLOCKED: "blocked",
    Stage.CANCELLED: "cancelled",
}


class Trigger(StrEnum):
    START = "start"
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCEL = "cancel"


@dataclass(frozen=True)
class ProjectStates:
    """One project's states and the logical keys they resolve to."""

    project: str
    states: tuple[PlaneState, ...]
    names: dict[str, str] = field(default_factory=dict)  # logical key -> wanted name

    def direct(self, key: str) -> str | None:
        """The id of the state named for `key` in this project, without aliasing."""
        wanted = self.names.get(key, DEFAULT_STATE_NAMES[key]).strip().casefold()
        for state in self.states:
            if state.name.strip().casefold() == wanted:
                return state.id
        return None

    def resolve(self, key: str) -> str | None:
        """The state id for `key`, following aliases within this project."""
        seen: set[str] = set()
        current: str | None = key
        while current is not None and current not in seen:
            seen.add(current)
            state_id = self.direct(current)
            if state_id is not None:
                return state_id
            current = ALIASES.get(current)
        return None

    def by_id(self, state_id: str) -> PlaneState | None:
        return next((s for s in self.states if s.id == state_id), None)

    def trigger_ids(self) -> dict[str, Trigger]:
        """Every trigger state id -> its trigger; an aliased key maps once, not twice."""
        out: dict[str, Trigger] = {}
        for state in self.states:
            if state.group == "cancelled":
                out[state.id] = Trigger.CANCEL
        for key, trigger in (("approved", Trigger.APPROVED), ("rejected", Trigger.REJECTED)):
            state_id = self.direct(key)
            if state_id is not None:
                out[state_id] = trigger
        for key in ("in_progress", "to_analyse"):
            state_id = self.resolve(key)
            if state_id is not None:
                out.setdefault(state_id, Trigger.START)
        return out

    def trigger_of(self, state_id: str | None) -> Trigger | None:
        return self.trigger_ids().get(state_id) if state_id else None

    def missing(self) -> list[str]:
        """Logical keys with no state of their own in this project."""
        return [key for key in LOGICAL_KEYS if self.direct(key) is None]

    def table(self) -> list[tuple[str, str, str, str]]:
        """(key, wanted name, resolved state name, how) for every logical key."""
        rows = []
        for key in LOGICAL_KEYS:
            resolved = self.resolve(key)
            state = self.by_id(resolved) if resolved else None
            how = (
                "own state"
                if self.direct(key)
                else f"alias -> {state.name}"
                if state
                else "MISSING"
            )
            rows.append(
                (
                    key,
                    self.names.get(key, DEFAULT_STATE_NAMES[key]),
                    state.name if state else "-",
                    how,
                )
            )
        return rows


class StatesCache(Protocol):
    """Where resolved states are kept between calls (the store: `pf:plane:states:*`)."""

    def cached_states(self, project: str) -> str | None: ...

    def cache_states(self, project: str, mapping: dict[str, str], ttl_s: int) -> None: ...


class StateResolver:
    """Per-project resolution of states, kept in a cache (the store) for `ttl_s`."""

    def __init__(self, client: PlaneClient, cache: StatesCache, *, ttl_s: int = 300) -> None:
        self.client = client
        self.cache = cache
        self.ttl_s = ttl_s

    def resolve(self, project: Project, *, refresh: bool = False) -> ProjectStates:
        """Raises PlaneError when the states cannot be listed (and nothing is cached)."""
        cached = None if refresh else self.cache.cached_states(project.name)
        if cached:
            states = tuple(PlaneState.model_validate(s) for s in json.loads(cached))
        else:
            states = tuple(self.client.list_states(project.plane_project_id))
            resolved = ProjectStates(project.name, states, dict(project.states))
            mapping = {"states": json.dumps([s.model_dump() for s in states])}
            mapping.update({k: resolved.resolve(k) or "" for k in LOGICAL_KEYS})
            self.cache.cache_states(project.name, mapping, self.ttl_s)
        return ProjectStates(project.name, states, dict(project.states))
