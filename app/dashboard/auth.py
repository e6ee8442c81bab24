"""Who may see and steer the dashboard, and proof that a POST came from its own page.

With `ORCH_DASHBOARD_TOKEN` set, every page and endpoint asks for it: as a bearer
header (`Authorization: Bearer <token>`, for scripts) or as the session cookie the
login form sets. The cookie holds no token: it is `<issued>.<HMAC(token, issued)>`,
valid for `SESSION_S`, so changing the token ends every session. Without a token the
dashboard is open, and is mounted only on a loopback address (`app.dashboard.mount`).

A POST made with the cookie (or on an open dashboard) must carry `X-CSRF-Token`, an
HMAC of the session the page was given, and come from the same origin (`Origin`, or
`Sec-Fetch-Site`, when the browser sends them): another site can make a browser send a
request, but cannot read the token or set the header. A bearer request needs neither:
it carries its own credential. Every comparison is in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

from aiohttp import web

COOKIE = "planeflow_session"
SESSION_S = 7 * 24 * 3600
CSRF_HEADER = "X-CSRF-Token"


class Access(Enum):
    DENIED = 0
    OPEN = 1  # no token configured (loopback only)
    COOKIE = 2
    BEARER = 3


@dataclass(frozen=True)
class Guard:
    token: bytes  # b"": an open dashboard
    csrf_key: bytes

    @classmethod
    def for_token(cls, token: str) -> Guard:
        raw = token.encode()
        # Derived from the token, so every web process behind a balancer agrees on it;
        # an open dashboard (one loopback process) makes its own.
        key = _mac(raw, b"planeflow-dashboard-csrf") if raw else os.urandom(32).hex()
        return cls(raw, key.encode())

    @property
    def open(self) -> bool:
        return not self.token

    # -- who is asking ------------------------------------------------------------------
    def access(self, request: web.Request) -> Access:
        if self.open:
            return Access.OPEN
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and given:
            ok = hmac.compare_digest(given.strip().encode(), self.token)
            return Access.BEARER if ok else Access.DENIED
        return Access.COOKIE if self.session_ok(request.cookies.get(COOKIE, "")) else Access.DENIED

    def token_ok(self, given: str) -> bool:
        return bool(self.token) and hmac.compare_digest(given.strip().encode(), self.token)

    def new_session(self, now: float | None = None) -> str:
        issued = str(int(now if now is not None else time.time()))
        return f"{issued}.{_mac(self.token, issued.encode())}"

    def session_ok(self, value: str, now: float | None = None) -> bool:
        issued, _, sig = value.partition(".")
        if not issued.isdigit() or not sig:
            return False
        age = (now if now is not None else time.time()) - int(issued)
        if not 0 <= age <= SESSION_S:
            return False
        return hmac.compare_digest(sig.encode(), _mac(self.token, issued.encode()).encode())

    # -- CSRF ---------------------------------------------------------------------------
    def csrf_token(self, request: web.Request) -> str:
        """The token the page sends back with its POSTs (bound to its session)."""
        return _mac(self.csrf_key, request.cookies.get(COOKIE, "open").encode())

    def csrf_ok(self, request: web.Request) -> bool:
        given = request.headers.get(CSRF_HEADER, "")
        if not given or not hmac.compare_digest(given.encode(), self.csrf_token(request).encode()):
            return False
        return same_origin(request)


def same_origin(request: web.Request) -> bool:
    """False when the browser says the request came from another site."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None:  # not sent by every client; the CSRF token was checked already
        return True
    if origin == "null":
        return False
    host = request.headers.get("X-Forwarded-Host") or request.host
    return urlsplit(origin).netloc == host


def safe_next(target: str) -> str:
    """Where to go after the login: a path of this site only."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _mac(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()
