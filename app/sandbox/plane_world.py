"""The sandbox Plane's in-memory world: projects, states, work items, comments.

No HTTP here: the server (`plane_server`) maps requests onto these methods and
renders the records with the same keys and value types as real Plane 1.3.1. Every
change that real Plane would announce calls `on_event(event, action, ...)` once per
changed field, as real Plane does.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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


class World:
    """Workspace, users (one per API key), projects; emits events on every change."""

    def __init__(
        self,
        workspace_slug: str = "acme",
        *,
        workspace_id: str | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        self.slug = workspace_slug
        self.workspace_id = workspace_id or new_id()
        self.users_by_key: dict[str, User] = {}
        self.projects: dict[str, Project] = {}
        self.on_event = on_event
        self.history: dict[str, list[tuple[str, str]]] = {}  # item -> [(state, actor)]
        self._clock = datetime.now(UTC)

    # -- time: strictly increasing, so updated_at orders every change ---------------
    def now(self) -> datetime:
        current = datetime.now(UTC)
        self._clock = max(current, self._clock + timedelta(microseconds=1))
        return self._clock

    def _emit(self, event: str, action: str, payload: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event, action, payload)

    # -- set-up ---------------------------------------------------------------------
    def add_user(
        self,
        api_key: str,
        display_name: str,
        *,
        user_id: str | None = None,
        first_name: str = "",
        last_name: str = "",
    ) -> User:
        user = User(
            user_id or new_id(),
            first_name or display_name.title(),
            last_name,
            f"{display_name}@example.com",
            display_name,
        )
        self.users_by_key[api_key] = user
        return user

    def user_for_key(self, api_key: str | None) -> User:
        if not api_key:
            raise SandboxError(401, {"detail": "Authentication credentials were not provided."})
        user = self.users_by_key.get(api_key)
        if user is None:
            raise SandboxError(403, {"detail": "Given API token is not valid"})
        return user

    def add_project(
        self,
        identifier: str,
        name: str,
        actor: User,
        *,
        project_id: str | None = None,
        description: str = "",
        states: tuple[tuple[str, str, str], ...] = CLASSIC_STATES,
        state_ids: dict[str, str] | None = None,
    ) -> Project:
        project = Project(
            project_id or new_id(), identifier, name, description, self.now(), actor.id
        )
        for i, (state_name, group, color) in enumerate(states):
            sid = (state_ids or {}).get(state_name) or new_id()
            project.states[sid] = State(
                sid, state_name, group, color, 15000.0 + i * 10000, i == 0, self.now(), actor.id
            )
        self.projects[project.id] = project
        self._emit("project", "created", {"project": project, "actor": actor})
        return project

    def project(self, project_id: str) -> Project:
        project = self.projects.get(project_id)
        if project is None:  # real Plane answers 403, not 404, for an unknown project
            raise SandboxError(
                403, {"detail": "You do not have permission to perform this action."}
            )
        return project

    def item(self, project: Project, item_id: str) -> Item:
        item = project.items.get(item_id)
        if item is None:
            raise not_found()
        return item

    # -- states ----------------------------------------------------------------------
    def create_state(self, project: Project, body: dict[str, Any], actor: User) -> State:
        errors: dict[str, list[str]] = {}
        name = str(body.get("name") or "")
        group = body.get("group", "backlog")
        if not name:
            errors["name"] = ["This field may not be blank."]
        if group not in STATE_GROUPS:
            errors["group"] = [f'"{group}" is not a valid choice.']
        if errors:
            raise SandboxError(400, errors)
        for state in project.states.values():
            if state.name == name:
                raise SandboxError(
                    409,
                    {
                        "error": "State with the same name already exists in the project",
                        "id": state.id,
                    },
                )
        state = State(
            new_id(),
            name,
            str(group),
            str(body.get("color") or "#60646C"),
            15000.0 + len(project.states) * 10000 + 5000,
            False,
            self.now(),
            actor.id,
        )
        project.states[state.id] = state
        return state

    # -- work items ------------------------------------------------------------------
    def create_item(self, project: Project, body: dict[str, Any], actor: User) -> Item:
        errors: dict[str, list[str]] = {}
        name = body.get("name")
        if name is None:
            errors["name"] = ["This field is required."]
        elif not str(name).strip():
            errors["name"] = ["This field may not be blank."]
        priority = body.get("priority", "none")
        if priority not in PRIORITIES:
            errors["priority"] = [f'"{priority}" is not a valid choice.']
        state_id = body.get("state")
        if state_id is not None and state_id not in project.states:
            errors["non_field_errors"] = ["State is not valid please pass a valid state_id"]
        if errors:
            raise SandboxError(400, errors)
        if state_id is None:
            state_id = next(s.id for s in project.states.values() if s.default)
        now = self.now()
        seq = next(project.seq)
        item = Item(
            new_id(),
            str(name),
            str(state_id),
            str(priority),
            seq,
            65535.0 + (seq - 1) * 10000,
            now,
            now,
            actor.id,
            description_html=str(body.get("description_html") or "<p></p>"),
            external_id=body.get("external_id"),
            external_source=body.get("external_source"),
        )
        project.items[item.id] = item
        self._activity(
            project, item, actor, "created", None, None, None, None, None, "created the issue"
        )
        self.history.setdefault(item.id, []).append(
            (project.states[item.state_id].name, actor.display_name)
        )
        self._emit(
            "issue",
            "created",
            {
                "project": project,
                "item": item,
                "actor": actor,
                "field": None,
                "old": None,
                "new": None,
            },
        )
        return item

    def update_item(
        self,
        project: Project,
        item: Item,
        body: dict[str, Any],
        actor: User,
        *,
        state_field: str = "state",
    ) -> Item:
        """Apply a PATCH; one event per field that really changed (none for a no-op)."""
        changes: list[tuple[str, Any, Any]] = []
        state_id = body.get("state", body.get("state_id"))
        if state_id is not None:
            if state_id not in project.states:
                raise SandboxError(
                    400, {"non_field_errors": ["State is not valid please pass a valid state_id"]}
                )
            if state_id != item.state_id:
                changes.append((state_field, item.state_id, state_id))
        if "priority" in body:
            if body["priority"] not in PRIORITIES:
                raise SandboxError(
                    400, {"priority": [f'"{body["priority"]}" is not a valid choice.']}
                )
            if body["priority"] != item.priority:
                changes.append(("priority", item.priority, body["priority"]))
        if "name" in body and body["name"] != item.name:
            if not str(body["name"]).strip():
                raise SandboxError(400, {"name": ["This field may not be blank."]})
            changes.append(("name", item.name, body["name"]))
        if "description_html" in body and body["description_html"] != item.description_html:
            changes.append(("description", item.description_html, body["description_html"]))
        for name, old, new in changes:
            if name in ("state", "state_id"):
                item.state_id = new
                old_name, new_name = project.states[old].name, project.states[new].name
                self._activity(
                    project,
                    item,
                    actor,
                    "updated",
                    "state",
                    old_name,
                    new_name,
                    old,
                    new,
                    "updated the state to",
                )
                self.history.setdefault(item.id, []).append((new_name, actor.display_name))
            elif name == "description":
                item.description_html = new
            else:
                setattr(item, name, new)
                self._activity(
                    project,
                    item,
                    actor,
                    "updated",
                    name,
                    str(old),
                    str(new),
                    None,
                    None,
                    f"updated the {name} to",
                )
        if changes:
            item.updated_at = self.now()
            item.updated_by = actor.id
        for name, old, new in changes:
            self._emit(
                "issue",
                "updated",
                {
                    "project": project,
                    "item": item,
                    "actor": actor,
                    "field": name,
                    "old": old,
                    "new": new,
                },
            )
        return item

    def delete_item(self, project: Project, item: Item) -> None:
        del project.items[item.id]  # real Plane 1.3.1 sends no webhook on delete

    def move(self, project_id: str, item_id: str, state_name: str, api_key: str) -> Item:
        """A state change from the Plane web app (webhook field `state_id`)."""
        project = self.project(project_id)
        actor = self.user_for_key(api_key)
        state = project.state_by_name(state_name)
        return self.update_item(
            project, self.item(project, item_id), {"state": state.id}, actor, state_field="state_id"
        )

    def add_comment(
        self, project: Project, item: Item, body: dict[str, Any], actor: User
    ) -> Comment:
        html = body.get("comment_html")
        if not html:
            raise SandboxError(400, {"comment_html": ["This field is required."]})
        ext_id, ext_source = body.get("external_id"), body.get("external_source")
        if ext_id and ext_source:  # Plane 1.3.1: one comment per (source, id) and item
            for existing in project.comments.get(item.id, []):
                if (existing.external_id, existing.external_source) == (ext_id, ext_source):
                    raise SandboxError(
                        409,
                        {
                            "error": "Work item comment with the same external id and "
                            "external source already exists",
                            "id": existing.id,
                        },
                    )
        comment = Comment(
            new_id(),
            item.id,
            str(html),
            self.now(),
            actor.id,
            str(ext_id) if ext_id else None,
            str(ext_source) if ext_source else None,
        )
        project.comments.setdefault(item.id, []).append(comment)
        self._emit(
            "issue_comment", "created", {"project": project, "comment": comment, "actor": actor}
        )
        return comment

    def _activity(
        self,
        project: Project,
        item: Item,
        actor: User,
        verb: str,
        field_name: str | None,
        old: str | None,
        new: str | None,
        old_id: str | None,
        new_id_: str | None,
        comment: str,
    ) -> None:
        project.activities.setdefault(item.id, []).append(
            Activity(
                new_id(),
                item.id,
                verb,
                field_name,
                old,
                new,
                old_id,
                new_id_,
                comment,
                self.now(),
                actor.id,
            )
        )

    def backdate(self, project_id: str, item_id: str, seconds: float) -> None:
        """Test helper: pretend the item was last updated `seconds` ago."""
        item = self.item(self.project(project_id), item_id)
        item.updated_at = datetime.now(UTC) - timedelta(seconds=seconds)

    def state_history(self, item_id: str) -> list[str]:
        return [name for name, _ in self.history.get(item_id, [])]
