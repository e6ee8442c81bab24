"""The dashboard's pages and endpoints: small coroutines over the board feed and actions.

Pages: `/` (the board) and `/tasks/<WORK-ITEM>` (one task), one HTML shell whose
script (`static/app.js`, served from here: no build step, no CDN) renders the JSON of
`/api/board` and `/api/tasks/<WORK-ITEM>` and follows `/api/stream` (server-sent
events: the board, sent again whenever it changes). Actions are POSTs:
`/api/tasks/<WORK-ITEM>/retry|cancel` and `/api/dead-letters/<id>/requeue`. Every
route is wrapped by `guarded`, which asks for the token (when one is set) and, for a
POST, the CSRF proof; the webhook routes are not touched by any of it. The login form
is `app.dashboard.login`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from app.actions import Origin
from app.dashboard.auth import Access, safe_next
from app.dashboard.common import (
    DASHBOARD,
    SECURITY_HEADERS,
    Dashboard,
    client_of,
    json_answer,
    misdirected,
    secure,
    static_file,
)
from app.dashboard.login import login, login_page, logout
from app.domain.results import Handled, Result

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KEEPALIVE_S = 15.0
STREAM_TICK_S = 0.5
MAX_STREAMS = 64
STATIC_TYPES = {"app.js": "text/javascript", "style.css": "text/css"}


def guarded(handler: Handler, *, page: bool = False, post: bool = False) -> Handler:
    """The token (when one is set) and, for a POST, the CSRF proof; the security headers."""

    async def check(request: web.Request) -> web.StreamResponse:
        dash = request.app[DASHBOARD]
        if not dash.guard.host_ok(request):
            return secure(misdirected())
        access = dash.guard.access(request)
        if access is Access.DENIED and request.headers.get("Authorization"):
            return secure(await _wrong_token(request, dash))
        if access is Access.DENIED:
            if page:
                target = safe_next(request.path_qs)
                raise web.HTTPSeeOther(f"/login?next={_quote(target)}", headers=SECURITY_HEADERS)
            refused = json_answer({"error": "the dashboard token is required"}, 401)
            refused.headers["WWW-Authenticate"] = 'Bearer realm="planeflow"'
            return secure(refused)
        if post and access is not Access.BEARER and not dash.guard.csrf_ok(request):
            return secure(
                json_answer({"error": "missing or wrong CSRF token, or another origin"}, 403)
            )
        resp: web.StreamResponse
        try:
            resp = await handler(request)
        except (web.HTTPException, asyncio.CancelledError):
            raise
        except Exception as exc:  # Redis down, a bug: never a 500 page, never a secret
            log.warning("dashboard %s %s failed: %s", request.method, request.path, exc)
            what = "the action failed" if post else "the board cannot be read now"
            resp = json_answer({"error": f"{what} ({type(exc).__name__}; see the web log)"}, 503)
        return secure(resp)

    return check


async def _wrong_token(request: web.Request, dash: Dashboard) -> web.Response:
    """A wrong bearer token: counted, slowed down, and refused at once past the limit."""
    wait = dash.failures.wait_s()
    if wait:
        resp = json_answer({"error": "too many wrong tokens; try again later"}, 429)
        resp.headers["Retry-After"] = str(int(wait) + 1)
        return resp
    dash.failures.failed(client_of(request))
    await asyncio.sleep(0.5)
    refused = json_answer({"error": "wrong dashboard token"}, 401)
    refused.headers["WWW-Authenticate"] = 'Bearer realm="planeflow", error="invalid_token"'
    return refused


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")


# -- pages --------------------------------------------------------------------------
async def shell(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    page = static_file("index.html").decode()
    page = page.replace("__CSRF__", dash.guard.csrf_token(request))
    page = page.replace("__MODE__", "open" if dash.guard.open else "token")
    return web.Response(text=page, content_type="text/html")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC_TYPES:
        raise web.HTTPNotFound()
    resp = web.Response(body=static_file(name), content_type=STATIC_TYPES[name])
    resp.headers.update(SECURITY_HEADERS)
    return resp


async def board(request: web.Request) -> web.Response:
    snap = await request.app[DASHBOARD].feed.get()
    return web.Response(body=snap.body, content_type="application/json")


async def task(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    work_item = request.match_info["work_item"]
    detail = await dash.feed.call(lambda: dash.board.task_detail(work_item))
    if detail is None:
        return json_answer({"error": f"no task for {work_item}"}, 404)
    return json_answer(detail)


async def stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: `board` with the board whenever it changes, a comment line
    every KEEPALIVE_S so proxies keep the connection, `problem` while Redis fails."""
    dash = request.app[DASHBOARD]
    if len(dash.streams) >= MAX_STREAMS:
        return json_answer({"error": "too many live views open"}, 503)
    resp = web.StreamResponse(
        headers={**SECURITY_HEADERS, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    await resp.prepare(request)
    me = asyncio.current_task()
    assert me is not None
    dash.streams.add(me)
    last, quiet = "", 0.0
    try:
        while not dash.stopping.is_set():
            try:
                snap = await dash.feed.get()
            except Exception as exc:
                await resp.write(f"event: problem\ndata: {type(exc).__name__}\n\n".encode())
                last = ""
            else:
                if snap.digest != last:
                    await resp.write(b"event: board\ndata: " + snap.body + b"\n\n")
                    last, quiet = snap.digest, 0.0
                elif quiet >= KEEPALIVE_S:
                    await resp.write(b": keepalive\n\n")
                    quiet = 0.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(dash.stopping.wait(), STREAM_TICK_S)
            quiet += STREAM_TICK_S
    except (ConnectionResetError, ConnectionError):
        pass  # the viewer went away
    finally:
        dash.streams.discard(me)
    return resp


# -- actions ------------------------------------------------------------------------
async def task_action(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    work_item, verb = request.match_info["work_item"], request.match_info["verb"]
    found = await dash.feed.call(lambda: dash.actions.store.find_task(work_item))
    if found is None:
        return json_answer({"error": f"no task for {work_item}"}, 404)
    origin = Origin("dashboard", client_of(request))
    act = dash.actions.retry if verb == "retry" else dash.actions.cancel
    result: Result = await dash.feed.call(lambda: act(found, origin))
    return _answer(result)


async def requeue(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    message_id = request.match_info["message_id"]
    origin = Origin("dashboard", client_of(request))
    result: Result = await dash.feed.call(lambda: dash.actions.requeue(message_id, origin))
    return _answer(result)


def _answer(result: Result) -> web.Response:
    status = 409 if result.kind is Handled.IGNORED else 200
    return json_answer({"kind": result.kind.value, "result": str(result)}, status)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", guarded(shell, page=True))
    r.add_get("/tasks/{work_item}", guarded(shell, page=True))
    r.add_get("/static/{name}", guarded(static, page=True))
    r.add_get("/login", login_page)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/api/board", guarded(board))
    r.add_get("/api/stream", guarded(stream))
    r.add_get("/api/tasks/{work_item}", guarded(task))
    r.add_post(r"/api/tasks/{work_item}/{verb:retry|cancel}", guarded(task_action, post=True))
    r.add_post("/api/dead-letters/{message_id}/requeue", guarded(requeue, post=True))
