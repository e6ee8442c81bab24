"""Render sandbox records with the keys and value types of real Plane 1.3.1 answers."""

from __future__ import annotations

import math
import re
from typing import Any

from app.sandbox.plane_world import Activity, Comment, Item, Project, SandboxError, State, World, ts

CURSOR = re.compile(r"^(\d+):(-?\d+):([01])$")
MAX_PER_PAGE = 1000


def render_state(world: World, project: Project, state: State) -> dict[str, Any]:
    return {
        "id": state.id,
        "created_at": ts(state.created_at),
        "updated_at": ts(state.created_at),
        "deleted_at": None,
        "name": state.name,
        "description": "",
        "color": state.color,
        "slug": state.name.lower().replace(" ", "-") if not state.default else "",
        "sequence": state.sequence,
        "group": state.group,
        "is_triage": False,
        "default": state.default,
        "external_source": None,
        "external_id": None,
        "created_by": state.created_by,
        "updated_by": None,
        "project": project.id,
        "workspace": world.workspace_id,
    }


def state_object(state: State) -> dict[str, Any]:
    return {"id": state.id, "name": state.name, "color": state.color, "group": state.group}


def render_item(
    world: World, project: Project, item: Item, *, expand: frozenset[str] = frozenset()
) -> dict[str, Any]:
    state = project.states[item.state_id]
    return {
        "id": item.id,
        "type_id": None,
        "created_at": ts(item.created_at),
        "updated_at": ts(item.updated_at),
        "deleted_at": None,
        "point": None,
        "name": item.name,
        "description_html": item.description_html,
        "description_binary": None,
        "priority": item.priority,
        "start_date": None,
        "target_date": None,
        "sequence_id": item.sequence_id,
        "sort_order": item.sort_order,
        "completed_at": None,
        "archived_at": None,
        "is_draft": False,
        "external_source": item.external_source,
        "external_id": item.external_id,
        "created_by": item.created_by,
        "updated_by": item.updated_by,
        "project": project.id,
        "workspace": world.workspace_id,
        "parent": None,
        "state": state_object(state) if "state" in expand else state.id,
        "estimate_point": None,
        "type": None,
        "assignees": [],
        "labels": [],
    }


def render_item_webhook(world: World, project: Project, item: Item) -> dict[str, Any]:
    """`data` of an issue webhook: the API rendering with the state as an object, no
    `type_id`, and the description in three more forms."""
    data = render_item(world, project, item, expand=frozenset({"state"}))
    del data["type_id"]
    data.update(
        description={},
        description_json={},
        description_stripped=re.sub(r"<[^>]+>", "", item.description_html),
    )
    return data


def render_comment(
    world: World, project: Project, comment: Comment, *, listing: bool = False
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": comment.id,
        "created_at": ts(comment.created_at),
        "updated_at": ts(comment.created_at),
        "deleted_at": None,
        "comment_html": comment.comment_html,
        "attachments": [],
        "access": "INTERNAL",
        "external_source": comment.external_source,
        "external_id": comment.external_id,
        "edited_at": None,
        "created_by": comment.actor,
        "updated_by": comment.actor,
        "project": project.id,
        "workspace": world.workspace_id,
        "description": comment.id,
        "issue": comment.issue_id,
        "actor": comment.actor,
        "parent": None,
    }
    if listing:
        out["is_member"] = True
    return out


def render_activity(world: World, project: Project, act: Activity) -> dict[str, Any]:
    return {
        "id": act.id,
        "created_at": ts(act.created_at),
        "updated_at": ts(act.created_at),
        "deleted_at": None,
        "verb": act.verb,
        "field": act.field,
        "old_value": act.old_value,
        "new_value": act.new_value,
        "comment": act.comment,
        "attachments": [],
        "old_identifier": act.old_identifier,
        "new_identifier": act.new_identifier,
        "epoch": float(int(act.created_at.timestamp())),
        "project": project.id,
        "workspace": world.workspace_id,
        "issue": act.issue_id,
        "issue_comment": None,
        "actor": act.actor,
    }


def render_project(world: World, project: Project, *, listing: bool = False) -> dict[str, Any]:
    default_state = next((s.id for s in project.states.values() if s.default), None)
    out: dict[str, Any] = {
        "id": project.id,
        "total_members": 1,
        "total_cycles": 0,
        "total_modules": 0,
        "is_member": True,
        "member_role": 20,
        "is_deployed": False,
        "cover_image_url": None,
        "created_at": ts(project.created_at),
        "updated_at": ts(project.created_at),
        "deleted_at": None,
        "name": project.name,
        "description": project.description,
        "description_text": None,
        "description_html": None,
        "network": 2,
        "identifier": project.identifier,
        "emoji": None,
        "icon_prop": None,
        "module_view": True,
        "cycle_view": True,
        "issue_views_view": True,
        "page_view": True,
        "intake_view": False,
        "is_time_tracking_enabled": False,
        "is_issue_type_enabled": False,
        "guest_view_all_features": False,
        "cover_image": None,
        "archive_in": 0,
        "close_in": 0,
        "logo_props": {"icon": {"name": "terminal", "color": "#f38e82"}, "in_use": "icon"},
        "archived_at": None,
        "timezone": "UTC",
        "external_source": None,
        "external_id": None,
        "created_by": project.created_by,
        "updated_by": project.created_by,
        "workspace": world.workspace_id,
        "default_assignee": None,
        "project_lead": None,
        "cover_image_asset": None,
        "estimate": None,
        "default_state": default_state,
    }
    if listing:
        out["sort_order"] = 65535.0
    return out


def paginate(rows: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    """Plane's envelope; cursor `<per_page>:<page>:<is_prev>`, next_cursor always set."""
    try:
        per_page = min(int(query.get("per_page", MAX_PER_PAGE)), MAX_PER_PAGE)
    except ValueError:
        raise SandboxError(400, {"detail": "Invalid per_page parameter."}) from None
    page = 0
    if "cursor" in query:
        match = CURSOR.match(query["cursor"])
        if match is None:
            raise SandboxError(400, {"detail": "Invalid cursor parameter."})
        per_page, page = int(match.group(1)), max(int(match.group(2)), 0)
    per_page = max(per_page, 1)
    total = len(rows)
    start = page * per_page
    results = rows[start : start + per_page]
    return {
        "grouped_by": None,
        "sub_grouped_by": None,
        "total_count": total,
        "next_cursor": f"{per_page}:{page + 1}:0",
        "prev_cursor": f"{per_page}:{page - 1}:1",
        "next_page_results": start + per_page < total,
        "prev_page_results": page > 0,
        "count": len(results),
        "total_pages": max(math.ceil(total / per_page), 1),
        "total_results": total,
        "extra_stats": None,
        "results": results,
    }


GROUP_ORDER = {
    g: i for i, g in enumerate(("backlog", "unstarted", "started", "completed", "cancelled"))
}


def order_items(project: Project, items: list[Item], order_by: str | None) -> list[Item]:
    """Default: newest created first. Filters (state, state_id, ...) are ignored, as in Plane."""
    key = (order_by or "-created_at").strip()
    desc = key.startswith("-")
    name = key.lstrip("-")
    if name == "state__group":
        return sorted(
            items, key=lambda i: GROUP_ORDER[project.states[i.state_id].group], reverse=desc
        )
    if name in ("updated_at", "created_at", "sequence_id", "sort_order", "priority", "name"):
        return sorted(items, key=lambda i: getattr(i, name), reverse=desc)
    return sorted(items, key=lambda i: i.created_at, reverse=True)
