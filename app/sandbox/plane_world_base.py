"""The sandbox Plane's world, without the work-item edits: users, projects, states,
comments, activities and the state history the tests read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from app.sandbox.plane_records import (
    CLASSIC_STATES,
    STATE_GROUPS,
    Activity,
    Comment,
    EventSink,
    Item,
    Project,
    SandboxError,
    State,
    User,
    new_id,
    not_found,
)


class WorldBase:
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
        self.non_members: set[str] = set()  # users of the workspace in no project
        self.projects: dict[str, Project] = {}
        self.on_event = on_event
        self.history: dict[str, list[tuple[str, str]]] = {}  # item -> [(state, actor)]
        self.wall: Callable[[], datetime] = lambda: datetime.now(UTC)  # benches simulate it
        self._clock = self.wall()

    # -- time: strictly increasing, so updated_at orders every change ---------------
    def now(self) -> datetime:
        current = self.wall()
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
        item.updated_at = self.wall() - timedelta(seconds=seconds)

    def state_history(self, item_id: str) -> list[str]:
        return [name for name, _ in self.history.get(item_id, [])]
