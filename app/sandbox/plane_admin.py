"""The sandbox Plane's admin routes: act as a person in the web app, read what happened.

`POST /_sandbox/move {"item": "DEMO-1", "state": "To Analyse"}` moves a card,
`POST /_sandbox/comment {"item": "DEMO-1", "html": "<p>/planeflow status</p>"}` writes
a comment (both as the human user, or as `"as": "<display name>"`), and
`GET /_sandbox/comments?item=DEMO-1`, `/_sandbox/history?item=...`,
`/_sandbox/deliveries` and `/_sandbox/info` show what the world now holds. An item is
named by its identifier (`DEMO-1`) or by its id with `"project"`. A work item's web-app
address (`/<workspace>/projects/<project>/issues/<id>`) shows it as a plain page.
"""

from __future__ import annotations

import html
import json
from typing import Any

from aiohttp import web

from app.sandbox import plane_render as render
from app.sandbox.plane_state import SANDBOX, SandboxPlane
from app.sandbox.plane_world import SandboxError, World, not_found


def json_answer(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


async def read_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        data = json.loads(raw or b"{}")
    except json.JSONDecodeError as exc:
        raise SandboxError(400, {"detail": f"JSON parse error - {exc}"}) from None
    if not isinstance(data, dict):
        raise SandboxError(400, {"non_field_errors": ["Invalid data."]})
    return data


def locate(world: World, project_id: str, item: str) -> tuple[str, str]:
    """(project id, item id) of `item`: an id (with its project's id) or an identifier
    such as `DEMO-1` (the project is then found by its prefix)."""
    prefix, _, seq = item.rpartition("-")
    for project in world.projects.values():
        if prefix and seq.isdigit() and project.identifier == prefix:
            for found in project.items.values():
                if str(found.sequence_id) == seq:
                    return project.id, found.id
            raise not_found()
    return project_id, item


def _key_of(sandbox: SandboxPlane, body: dict[str, Any]) -> str:
    """The API key to act with: `api_key`, the user named by `as`, or the human's."""
    if body.get("api_key"):
        return str(body["api_key"])
    name = body.get("as")
    if name:
        for key, user in sandbox.world.users_by_key.items():
            if user.display_name == name:
                return key
        raise SandboxError(400, {"error": f"no sandbox user {name!r}"})
    return str(sandbox.human_key or "")


async def admin(request: web.Request) -> web.Response:
    sandbox: SandboxPlane = request.app[SANDBOX]
    action = request.match_info["action"]
    try:
        if request.method == "GET":
            with sandbox.lock:
                return _read(sandbox, action, dict(request.query))
        body = await read_body(request)
        with sandbox.lock:
            return _act(sandbox, action, body)
    except (KeyError, SandboxError) as exc:
        if isinstance(exc, SandboxError):
            return json_answer(exc.body, exc.status)
        return json_answer({"error": f"missing or unknown {exc}"}, 400)


def _read(sandbox: SandboxPlane, action: str, query: dict[str, str]) -> web.Response:
    world = sandbox.world
    if action == "info":
        return json_answer(sandbox.info())
    if action == "deliveries":
        return json_answer([d.summary() for d in sandbox.sender.sent])
    if action == "history":
        _, item_id = locate(world, query.get("project", ""), query["item"])
        return json_answer(world.state_history(item_id))
    if action == "comments":
        project_id, item_id = locate(world, query.get("project", ""), query["item"])
        project = world.project(project_id)
        return json_answer(
            [render.render_comment(world, project, c) for c in project.comments.get(item_id, [])]
        )
    return json_answer({"error": f"unknown admin action {action!r}"}, 404)


def _act(sandbox: SandboxPlane, action: str, body: dict[str, Any]) -> web.Response:
    world = sandbox.world
    key = _key_of(sandbox, body)
    if action == "move":
        project_id, item_id = locate(world, body.get("project", ""), body["item"])
        item = world.move(project_id, item_id, body["state"], key)
        return json_answer({"id": item.id, "state": item.state_id})
    if action == "create":
        project = world.project(body["project"])
        state = project.state_by_name(body.get("state", "Backlog"))
        item = world.create_item(
            project,
            {
                "name": body["name"],
                "state": state.id,
                "description_html": body.get("description_html", "<p></p>"),
            },
            world.user_for_key(key),
        )
        return json_answer(render.render_item(world, project, item), 201)
    if action == "comment":
        project_id, item_id = locate(world, body.get("project", ""), body["item"])
        project = world.project(project_id)
        comment = world.add_comment(
            project,
            world.item(project, item_id),
            {"comment_html": body["html"]},
            world.user_for_key(key),
        )
        return json_answer({"id": comment.id}, 201)
    if action == "webhook":
        sandbox.sender.configure(body.get("url"), str(body.get("secret", "")))
        return json_answer({"url": sandbox.sender.url})
    if action == "backdate":
        world.backdate(body["project"], body["item"], float(body["seconds"]))
        return json_answer({"ok": True})
    return json_answer({"error": f"unknown admin action {action!r}"}, 404)


async def item_page(request: web.Request) -> web.Response:
    """Plane's web-app address of a work item (`/<ws>/projects/<pid>/issues/<id>`), as a
    plain page: what the dashboard's "work item in Plane" link opens on the sandbox."""
    sandbox: SandboxPlane = request.app[SANDBOX]
    world = sandbox.world
    with sandbox.lock:
        try:
            project = world.project(request.match_info["pid"])
            item = world.item(project, request.match_info["iid"])
        except SandboxError:
            raise web.HTTPNotFound(text="no such work item in the sandbox") from None
        state = project.states[item.state_id].name if item.state_id in project.states else "?"
        history = world.state_history(item.id)
        comments = list(project.comments.get(item.id, []))
        users = {u.id: u.display_name for u in world.users_by_key.values()}
    rows = "".join(
        f"<li><b>{html.escape(users.get(c.actor, c.actor))}</b>: "
        f"<code>{html.escape(c.comment_html)}</code></li>"
        for c in comments
    )
    page = (
        f"<!doctype html><meta charset='utf-8'><title>{project.identifier}-{item.sequence_id}"
        f"</title><h1>{project.identifier}-{item.sequence_id} {html.escape(item.name)}</h1>"
        f"<p>State: <b>{html.escape(state)}</b> (sandbox Plane; history: "
        f"{html.escape(' → '.join(history))})</p><h2>Comments</h2><ul>{rows}</ul>"
    )
    return web.Response(text=page, content_type="text/html")
