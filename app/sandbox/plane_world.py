"""The sandbox Plane's in-memory world: projects, states, work items, comments.

No HTTP here: the server (`plane_server`) maps requests onto these methods and
renders the records with the same keys and value types as real Plane 1.3.1. Every
change that real Plane would announce calls `on_event(event, action, ...)` once per
changed field, as real Plane does.
"""

from __future__ import annotations

from typing import Any

from app.sandbox.plane_records import (
    CLASSIC_STATES,
    PRIORITIES,
    STATE_GROUPS,
    Activity,
    Comment,
    Item,
    Project,
    SandboxError,
    State,
    User,
    new_id,
    not_found,
    ts,
)

__all__ = [
    "CLASSIC_STATES",
    "PRIORITIES",
    "STATE_GROUPS",
    "Activity",
    "Comment",
    "Item",
    "Project",
    "SandboxError",
    "State",
    "User",
    "World",
    "new_id",
    "not_found",
    "ts",
]

from app.sandbox.plane_world_base import WorldBase


class World(WorldBase):
    """The world with work items created, edited (one event per changed field), moved."""

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
        changes = self._changes(project, item, body, state_field)
        for name, old, new in changes:
            self._apply_change(project, item, actor, name, old, new)
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

    @staticmethod
    def _changes(
        project: Project, item: Item, body: dict[str, Any], state_field: str
    ) -> list[tuple[str, Any, Any]]:
        """The fields a PATCH really changes (validated like Plane does)."""
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
        return changes

    def _apply_change(
        self, project: Project, item: Item, actor: User, name: str, old: Any, new: Any
    ) -> None:
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
