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
it carries its own credential. Every comparison is in constant time, on the header's
bytes as they came. An open dashboard answers only requests addressed to a loopback
name (`Host: 127.0.0.1`, `localhost`, `[::1]`): a site that rebinds its own name to
127.0.0.1 would otherwise be same-origin with it. Wrong tokens are limited per process
(`Failures`): past a few a minute every guess waits, whatever it guesses.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

from aiohttp import web

log = logging.getLogger(__name__)

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
            return Access.BEARER if self.token_ok(given) else Access.DENIED
        return Access.COOKIE if self.session_ok(request.cookies.get(COOKIE, "")) else Access.DENIED

    def token_ok(self, given: str) -> bool:
        return bool(self.token) and hmac.compare_digest(_raw(given.strip()), self.token)

    def host_ok(self, request: web.Request) -> bool:
        """Any Host behind a token; an open dashboard only on a loopback name."""
        return not self.open or loopback_name(request.host)

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
        return hmac.compare_digest(_raw(sig), _mac(self.token, issued.encode()).encode())

    # -- CSRF ---------------------------------------------------------------------------
    def csrf_token(self, request: web.Request) -> str:
        """The token the page sends back with its POSTs (bound to its session)."""
        return _mac(self.csrf_key, _raw(request.cookies.get(COOKIE, "open")))

    def csrf_ok(self, request: web.Request, given: str | None = None) -> bool:
        """The page's token (`X-CSRF-Token`, or `given` from a form) and the same origin."""
        given = request.headers.get(CSRF_HEADER, "") if given is None else given
        expected = self.csrf_token(request).encode()
        return bool(given) and hmac.compare_digest(_raw(given), expected) and same_origin(request)


class Failures:
    """Wrong tokens in this process: after `allowed` within `window_s`, each further
    guess is refused at once (429) until the window has room again. One log line per
    window, not one per guess."""

    def __init__(self, allowed: int = 10, window_s: float = 60.0) -> None:
        self.allowed = allowed
        self.window_s = window_s
        self._times: deque[float] = deque()
        self._logged_at = 0.0

    def wait_s(self, now: float | None = None) -> float:
        """0 when a guess may be judged now, else the seconds to wait."""
        now = time.monotonic() if now is None else now
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()
        if len(self._times) < self.allowed:
            return 0.0
        return self._times[0] + self.window_s - now

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._times.append(now)
        if now - self._logged_at >= self.window_s:
            self._logged_at = now
            log.warning(
                "dashboard: a wrong token (client %s); %d in the last %gs",
                client,
                len(self._times),
                self.window_s,
            )


def loopback_name(host: str) -> bool:
    """The Host header names this machine's loopback (any port)."""
    try:
        name = urlsplit("//" + host).hostname or ""
    except ValueError:
        return False
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


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
    """Where to go after the login: a path of this site only, and no control character
    in it (a URL parser drops them: a slash, a tab and a slash would become `//`)."""
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in target):
        return "/"
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _raw(text: str) -> bytes:
    """A header's text as the bytes it came as (aiohttp keeps odd bytes as surrogates)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _mac(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()
