"""Typed views of what Plane sends: API resources and webhook bodies.

Tolerant of unknown fields (Plane adds fields between versions). Shapes follow the
recordings of a real Plane 1.3.1 server in tests/fixtures/plane.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

STATE_GROUPS = ("backlog", "unstarted", "started", "completed", "cancelled")


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


def aware(value: datetime) -> datetime:
    """Plane renders times in the key owner's timezone; a naive one is taken as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class PlaneState(_Wire):
    id: str
    name: str
    group: str = ""
    color: str = ""


class PlaneUser(_Wire):
    id: str
    display_name: str = ""
    email: str = ""


class WorkItem(_Wire):
    """A work item. `state` arrives as a bare UUID or, expanded, as an object."""

    id: str
    name: str = ""
    state_id: str | None = None
    state_group: str | None = None
    state_name: str | None = None
    project: str | None = None
    sequence_id: int | None = None
    updated_at: datetime
    description_html: str | None = None
    description_stripped: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _split_state(cls, data: Any) -> Any:
        if isinstance(data, dict) and "state" in data:
            data = dict(data)
            state = data.pop("state")
            if isinstance(state, dict):
                data.setdefault("state_id", state.get("id"))
                data.setdefault("state_group", state.get("group"))
                data.setdefault("state_name", state.get("name"))
            elif isinstance(state, str):
                data.setdefault("state_id", state)
        return data

    @field_validator("updated_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return aware(value)


class Comment(_Wire):
    id: str
    comment_html: str = ""
    created_at: datetime
    actor: str | None = None
    created_by: str | None = None

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return aware(value)


class Page(_Wire):
    """Plane's pagination envelope. `next_cursor` is set even on the last page."""

    results: list[dict[str, Any]]
    next_cursor: str | None = None
    next_page_results: bool = False
    total_count: int | None = None
