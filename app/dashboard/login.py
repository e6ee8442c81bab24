"""The login form and logout: the session cookie of a dashboard that has a token.

`GET /login` shows the form (an open dashboard has nothing to log in to and goes on),
`POST /login` checks the token — guesses past a few a minute wait, whatever they
guess — and sets the session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS),
`POST /logout` clears it, only from the dashboard's own page (its CSRF token).
"""

from __future__ import annotations

import asyncio
import html

from aiohttp import web

from app.dashboard.auth import COOKIE, SESSION_S, safe_next
from app.dashboard.common import (
    DASHBOARD,
    SECURITY_HEADERS,
    client_of,
    json_answer,
    misdirected,
    static_file,
)

# The login page is one file with its own few styles: nothing else runs on it.
LOGIN_HEADERS = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


async def login_page(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    if not dash.guard.host_ok(request):
        return misdirected()
    target = safe_next(request.query.get("next", "/"))
    if dash.guard.open:  # nothing to log in to
        raise web.HTTPSeeOther(target, headers=SECURITY_HEADERS)
    return _login_form(target, "")


def _login_form(target: str, error: str, status: int = 200) -> web.Response:
    page = static_file("login.html").decode()
    page = page.replace("__NEXT__", html.escape(safe_next(target)))
    page = page.replace("__ERROR__", html.escape(error))
    resp = web.Response(text=page, content_type="text/html", status=status)
    resp.headers.update(LOGIN_HEADERS)
    return resp


async def login(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    if not dash.guard.host_ok(request):
        return misdirected()
    form = await request.post()
    target = safe_next(str(form.get("next", "/")))
    if dash.guard.open:
        raise web.HTTPSeeOther(target)
    wait = dash.failures.wait_s()
    if wait:
        return _login_form(target, f"Too many wrong tokens: try again in {int(wait) + 1} s.", 429)
    if not dash.guard.token_ok(str(form.get("token", ""))):
        dash.failures.failed(client_of(request))
        await asyncio.sleep(0.5)  # slows guessing down; the loop serves others meanwhile
        return _login_form(target, "That is not the dashboard token.", 401)
    resp = web.HTTPSeeOther(target, headers=SECURITY_HEADERS)
    resp.set_cookie(
        COOKIE,
        dash.guard.new_session(),
        max_age=SESSION_S,
        httponly=True,
        samesite="Strict",
        secure=_https(request),
        path="/",
    )
    raise resp


async def logout(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    form = await request.post()
    if not dash.guard.csrf_ok(request, str(form.get("csrf", ""))):  # no logout from afar
        refused = json_answer({"error": "missing or wrong CSRF token, or another origin"}, 403)
        refused.headers.update(SECURITY_HEADERS)
        return refused
    resp = web.HTTPSeeOther("/login", headers=SECURITY_HEADERS)
    resp.del_cookie(COOKIE, path="/")
    raise resp


def _https(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "") == "https"


# -- reads --------------------------------------------------------------------------
