"""The sandbox Plane server: Plane's REST API v1 subset over aiohttp, plus admin routes.

Same paths (`work-items/` and the older `issues/`), envelope, cursor format, ignored
state filters, error bodies, per-key rate limit (429 + Retry-After, no rate headers on
401/403/429) as the recordings of real Plane 1.3.1. `/_sandbox/...` routes
(`app.sandbox.plane_admin`) let tests and the demo act as a human in the web app and
read what happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from app.sandbox import plane_render as render
from app.sandbox.plane_admin import admin, item_page
from app.sandbox.plane_admin import json_answer as _json
from app.sandbox.plane_admin import read_body as _body
from app.sandbox.plane_state import SANDBOX, SandboxPlane, _RetryAfter
from app.sandbox.plane_world import Project, SandboxError, User, World, not_found

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
WORLD = web.AppKey("world", World)
USER = web.RequestKey("user", User)

__all__ = ["SANDBOX", "USER", "WORLD", "SandboxPlane", "make_app"]


@web.middleware
async def plane_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    sandbox: SandboxPlane = request.app[SANDBOX]
    if not request.path.startswith("/api/"):
        return await handler(request)
    sandbox.request_log.append((request.method, request.path))
    fault = next(
        (f for pid, f in sandbox.faults.items() if pid == "*" or pid in request.path), None
    )
    if fault == "500":
        return web.Response(
            status=500, text="<h1>Server Error (500)</h1>", content_type="text/html"
        )
    if fault == "garbage":
        return web.Response(status=200, text="{not json", content_type="application/json")
    if fault == "404":  # as if the resource were gone
        return _json({"error": "The requested resource does not exist."}, 404)
    if fault and fault.startswith("slow:"):
        await asyncio.sleep(float(fault.split(":", 1)[1]))
    rate_headers: dict[str, str] = {}
    try:
        with sandbox.lock:
            request[USER] = sandbox.world.user_for_key(request.headers.get("X-API-Key"))
            rate_headers = sandbox.check_rate(request.headers["X-API-Key"])
        response = await handler(request)
        response.headers.update(rate_headers)
        if fault == "lose_answer":  # done, but the answer never reaches the client
            return web.Response(status=502, text="Bad Gateway", content_type="text/html")
        return response
    except SandboxError as exc:
        # Like Plane: 401/403/429 answers carry no rate headers, other errors do.
        headers = {} if exc.status in (401, 403, 429) else dict(rate_headers)
        if isinstance(exc.__cause__, _RetryAfter):
            headers["Retry-After"] = str(exc.__cause__.seconds)
        return _json(exc.body, exc.status, headers)


def _ctx(request: web.Request) -> tuple[SandboxPlane, World, Project]:
    sandbox = request.app[SANDBOX]
    world = sandbox.world
    if request.match_info["slug"] != world.slug:
        raise SandboxError(403, {"detail": "You do not have permission to perform this action."})
    return sandbox, world, world.project(request.match_info["pid"])


async def users_me(request: web.Request) -> web.Response:
    return _json(request[USER].render())


async def projects(request: web.Request) -> web.Response:
    sandbox, world = request.app[SANDBOX], request.app[WORLD]
    with sandbox.lock:
        if request.method == "POST":
            body = await _body(request)
            if not body.get("name") or not body.get("identifier"):
                raise SandboxError(400, {"name": ["This field is required."]})
            project = world.add_project(
                str(body["identifier"]),
                str(body["name"]),
                request[USER],
                description=str(body.get("description", "")),
            )
            return _json(render.render_project(world, project), 201)
        rows = [render.render_project(world, p, listing=True) for p in world.projects.values()]
        return _json(render.paginate(rows, dict(request.query)))


async def states(request: web.Request) -> web.Response:
    sandbox, world, project = _ctx(request)
    with sandbox.lock:
        if request.method == "POST":
            state = world.create_state(project, await _body(request), request[USER])
            return _json(render.render_state(world, project, state))  # 200, not 201
        rows = [
            render.render_state(world, project, s)
            for s in sorted(project.states.values(), key=lambda s: s.sequence)
        ]
        return _json(render.paginate(rows, dict(request.query)))


async def members(request: web.Request) -> web.Response:
    sandbox, world, _ = _ctx(request)
    with sandbox.lock:  # a plain list, no envelope
        users = {u.id: u for u in world.users_by_key.values() if u.id not in world.non_members}
        return _json([u.render() for u in users.values()])


def _expand(request: web.Request) -> frozenset[str]:
    return frozenset(x.strip() for x in request.query.get("expand", "").split(",") if x.strip())


async def work_items(request: web.Request) -> web.Response:
    sandbox, world, project = _ctx(request)
    with sandbox.lock:
        if request.method == "POST":
            item = world.create_item(project, await _body(request), request[USER])
            return _json(render.render_item(world, project, item), 201)
        query = dict(request.query)
        if "external_id" in query and "external_source" in query:
            for item in project.items.values():  # one object, not an envelope
                if (item.external_id, item.external_source) == (
                    query["external_id"],
                    query["external_source"],
                ):
                    return _json(render.render_item(world, project, item))
            raise not_found()
        items = render.order_items(project, list(project.items.values()), query.get("order_by"))
        expand = _expand(request)
        page = render.paginate([{"_": i} for i in items], query)  # ids first, render the page
        page["results"] = [
            render.render_item(world, project, r["_"], expand=expand) for r in page["results"]
        ]
        return _json(page)


async def work_item(request: web.Request) -> web.StreamResponse:
    sandbox, world, project = _ctx(request)
    with sandbox.lock:
        item = world.item(project, request.match_info["iid"])
        if request.method == "PATCH":
            item = world.update_item(project, item, await _body(request), request[USER])
        elif request.method == "DELETE":
            world.delete_item(project, item)
            return web.Response(status=204)
        return _json(render.render_item(world, project, item, expand=_expand(request)))


async def comments(request: web.Request) -> web.Response:
    sandbox, world, project = _ctx(request)
    with sandbox.lock:
        item = world.item(project, request.match_info["iid"])
        if request.method == "POST":
            comment = world.add_comment(project, item, await _body(request), request[USER])
            return _json(render.render_comment(world, project, comment), 201)
        rows = [
            render.render_comment(world, project, c, listing=True)
            for c in project.comments.get(item.id, [])
        ]
        return _json(render.paginate(rows, dict(request.query)))


async def activities(request: web.Request) -> web.Response:
    sandbox, world, project = _ctx(request)
    with sandbox.lock:
        item = world.item(project, request.match_info["iid"])
        rows = [
            render.render_activity(world, project, a) for a in project.activities.get(item.id, [])
        ]
        return _json(render.paginate(rows, dict(request.query)))


async def by_identifier(request: web.Request) -> web.Response:
    sandbox, world = request.app[SANDBOX], request.app[WORLD]
    prefix, _, seq = request.match_info["ident"].rpartition("-")
    with sandbox.lock:
        for project in world.projects.values():
            if project.identifier == prefix:
                for item in project.items.values():
                    if str(item.sequence_id) == seq:
                        return _json(render.render_item(world, project, item))
        raise not_found()


def make_app(sandbox: SandboxPlane) -> web.Application:
    app = web.Application(middlewares=[plane_middleware])
    app[SANDBOX] = sandbox
    app[WORLD] = sandbox.world
    ws = "/api/v1/workspaces/{slug}"
    proj = ws + "/projects/{pid}"
    r = app.router
    r.add_get("/api/v1/users/me/", users_me)
    r.add_route("*", ws + "/projects/", projects)
    r.add_route("*", proj + "/states/", states)
    r.add_get(proj + "/members/", members)
    for kind in ("work-items", "issues"):
        r.add_route("*", proj + f"/{kind}/", work_items)
        r.add_route("*", proj + f"/{kind}/{{iid}}/", work_item)
        r.add_route("*", proj + f"/{kind}/{{iid}}/comments/", comments)
        r.add_get(proj + f"/{kind}/{{iid}}/activities/", activities)
    r.add_get(ws + "/work-items/{ident}/", by_identifier)
    r.add_route("*", "/_sandbox/{action}", admin)
    r.add_get("/{slug}/projects/{pid}/issues/{iid}", item_page)  # the web app's address

    async def sender_ctx(app: web.Application) -> Any:
        await sandbox.sender.start()
        yield
        await sandbox.sender.stop()

    app.cleanup_ctx.append(sender_ctx)
    return app
