"""The sandbox Plane's records: users, states, work items, comments, activities.

Plain dataclasses; `plane_world.World` changes them and `plane_render` renders them with
the keys and value types of real Plane 1.3.1.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PRIORITIES = ("urgent", "high", "medium", "low", "none")
STATE_GROUPS = ("backlog", "unstarted", "started", "completed", "cancelled")
CLASSIC_STATES = (
    ("Backlog", "backlog", "#60646C"),
    ("Todo", "unstarted", "#60646C"),
    ("In Progress", "started", "#F59E0B"),
    ("Done", "completed", "#46A758"),
    ("Cancelled", "cancelled", "#9AA4BC"),
)

EventSink = Callable[[str, str, dict[str, Any]], None]


def new_id() -> str:
    return str(uuid.uuid4())


def ts(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SandboxError(Exception):
    """An API error with Plane's status and body."""

    def __init__(self, status: int, body: dict[str, Any] | list[Any]) -> None:
        self.status = status
        self.body = body
        super().__init__(f"{status} {body}")


def not_found() -> SandboxError:
    return SandboxError(404, {"error": "The requested resource does not exist."})


@dataclass
class User:
    id: str
    first_name: str
    last_name: str
    email: str
    display_name: str

    def render(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "email": self.email,
            "avatar": "",
            "avatar_url": None,
            "display_name": self.display_name,
        }


@dataclass
class State:
    id: str
    name: str
    group: str
    color: str
    sequence: float
    default: bool
    created_at: datetime
    created_by: str


@dataclass
class Item:
    id: str
    name: str
    state_id: str
    priority: str
    sequence_id: int
    sort_order: float
    created_at: datetime
    updated_at: datetime
    created_by: str
    updated_by: str | None = None
    description_html: str = "<p></p>"
    external_id: str | None = None
    external_source: str | None = None


@dataclass
class Comment:
    id: str
    issue_id: str
    comment_html: str
    created_at: datetime
    actor: str
    external_id: str | None = None
    external_source: str | None = None


@dataclass
class Activity:
    id: str
    issue_id: str
    verb: str
    field: str | None
    old_value: str | None
    new_value: str | None
    old_identifier: str | None
    new_identifier: str | None
    comment: str
    created_at: datetime
    actor: str


@dataclass
class Project:
    id: str
    identifier: str
    name: str
    description: str
    created_at: datetime
    created_by: str
    states: dict[str, State] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)
    comments: dict[str, list[Comment]] = field(default_factory=dict)
    activities: dict[str, list[Activity]] = field(default_factory=dict)
    seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def state_by_name(self, name: str) -> State:
        for state in self.states.values():
            if state.name.casefold() == name.casefold():
                return state
        raise KeyError(f"project {self.identifier} has no state {name!r}")
