"""A Plane webhook delivery's fields, read by hand: the receiver's hot path.

A delivery is `{"event", "action", "webhook_id", "workspace_id", "data", "activity"}`.
The receiver needs only a few of its fields, for every request, so they are checked
and picked here without building a model: `event` and `action` (strings), `data` (an
object), and from `activity` (an object, or absent/null) its `field` (string or null)
and `actor.id` (a string, when an actor is given). Anything else is left as it came.
A shape problem raises `ShapeError` naming where it is.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class ShapeError(ValueError):
    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


class Hook(NamedTuple):  # immutable, and a third of a frozen dataclass's cost to make
    event: str
    action: str
    data: dict[str, Any]
    field: str | None
    actor_id: str

    @property
    def project_id(self) -> str | None:
        project = self.data.get("project")
        return project if isinstance(project, str) else None

    @property
    def issue_id(self) -> str | None:
        """The work item this event is about (the comment's issue for comment events)."""
        if self.event == "issue":
            value = self.data.get("id")
        elif self.event == "issue_comment":
            value = self.data.get("issue")
        else:
            value = None
        return value if isinstance(value, str) else None

    @property
    def is_state_change(self) -> bool:
        # API writes say `state`; the Plane web app says `state_id`.
        return self.event == "issue" and self.field in ("state", "state_id")


def _text(raw: dict[str, Any], name: str, where: str) -> str:
    value = raw.get(name)
    if value is None and name not in raw:
        raise ShapeError(where + name, "field required")
    if not isinstance(value, str):
        raise ShapeError(where + name, "should be a string")
    return value


def read_hook(raw: Any) -> Hook:
    """The fields of a parsed delivery; `ShapeError` when the shape is not Plane's."""
    if not isinstance(raw, dict):
        raise ShapeError("(top level)", "should be an object")
    event = _text(raw, "event", "")
    action = _text(raw, "action", "")
    data = raw.get("data")
    if not isinstance(data, dict):
        raise ShapeError("data", "field required" if data is None else "should be an object")
    activity = raw.get("activity")
    if activity is None:
        return Hook(event, action, data, None, "")
    if not isinstance(activity, dict):
        raise ShapeError("activity", "should be an object or null")
    field = activity.get("field")
    if field is not None and not isinstance(field, str):
        raise ShapeError("activity.field", "should be a string or null")
    actor = activity.get("actor")
    if actor is None:
        return Hook(event, action, data, field, "")
    if not isinstance(actor, dict) or not isinstance(actor.get("id"), str):
        raise ShapeError("activity.actor.id", "should be a string")
    return Hook(event, action, data, field, actor["id"])
