"""What the dashboard's pages and endpoints share: its state on the app, the security
headers every answer carries, and small answers (JSON, the rebinding refusal)."""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from app.actions import Actions
from app.board import Board
from app.dashboard.auth import Failures, Guard
from app.dashboard.feed import BoardFeed

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass
class Dashboard:
    guard: Guard
    feed: BoardFeed
    board: Board
    actions: Actions
    failures: Failures = field(default_factory=Failures)
    streams: set[asyncio.Task[Any]] = field(default_factory=set)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


DASHBOARD = web.AppKey("dashboard", Dashboard)


def static_file(name: str) -> bytes:
    return resources.files("app.dashboard").joinpath("static", name).read_bytes()


def json_answer(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def secure(resp: web.StreamResponse) -> web.StreamResponse:
    if not resp.prepared:
        resp.headers.update(SECURITY_HEADERS)
    return resp


def misdirected() -> web.Response:
    """An open dashboard asked under another name than loopback (DNS rebinding)."""
    return json_answer(
        {"error": "this dashboard answers only on 127.0.0.1, localhost or [::1]"}, 421
    )


def client_of(request: web.Request) -> str:
    """The client's address, with the one a proxy names (an address only) first."""
    remote = request.remote or "?"
    forwarded = request.headers.get("X-Forwarded-For", "").split(",")[0].strip()
    try:
        named = str(ipaddress.ip_address(forwarded))
    except ValueError:
        return remote
    return f"{named} via {remote}"
