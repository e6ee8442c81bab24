"""The transport of the Plane client: API keys per project, the shared rate budget,
timeouts, retries with backoff and jitter, 429 `Retry-After`, one HTTP session.

`request` spends the budget of the key it sends (the project's own, or the default),
tells the budget what the server says is left, and raises PlaneError — which says
whether a retry may help — when its retries are spent.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import quote

import httpx

from app.domain.errors import PlaneError
from app.plane.ratelimit import Priority, RateBudget

log = logging.getLogger(__name__)

Counter = Callable[[str], None]
MAX_PER_PAGE = 1000


def _no_count(name: str) -> None:
    return None


@dataclass(frozen=True)
class ProjectKey:
    api_key: str
    budget: RateBudget | None


class PlaneTransport:
    """Keys, budgets, retries and the HTTP session; `PlaneClient` adds the resources."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        workspace: str,
        *,
        timeout_s: float = 10.0,
        retries: int = 3,
        budget: RateBudget | None = None,
        count: Counter = _no_count,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        backoff_base_s: float = 0.5,
        max_retry_after_s: float = 60.0,
        project_keys: dict[str, ProjectKey] | None = None,
    ) -> None:
        self.workspace = workspace
        self.retries = retries
        self.budget = budget
        # Plane project id -> its own API key and that key's budget (registry
        # `plane_api_token`); other projects use `api_key` and `budget`.
        self.project_keys = dict(project_keys or {})
        self._prepaid = 0
        self._key: str | None = None  # set by `for_key`: sent instead of the default
        self.count = count
        self._sleep = sleep
        self._backoff_base_s = backoff_base_s
        self._max_retry_after_s = max_retry_after_s
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"X-API-Key": api_key, "Accept": "application/json"},
            timeout=timeout_s,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def budget_for(self, project_id: str | None) -> RateBudget | None:
        """The budget a request about `project_id` spends (its key's)."""
        own = self.project_keys.get(project_id or "")
        return own.budget if own is not None else self.budget

    def for_key(self, project_id: str) -> Self | None:
        """This client speaking as the project's own key (None: the project has none)."""
        own = self.project_keys.get(project_id)
        if own is None:
            return None
        other = copy.copy(self)
        other.project_keys = {}
        other.budget = own.budget
        other._key = own.api_key
        return other

    def prepaid(self, ticket: int) -> Self:
        """This client for one request whose budget was already taken (`try_acquire`'s
        ticket): its first attempt does not ask the budget again."""
        other = copy.copy(self)
        other._prepaid = ticket
        return other

    def at_priority(self, priority: Priority, *, retries: int | None = None) -> Self:
        """This client (same connection pool) spending the budget at `priority`."""
        other = copy.copy(self)
        if self.budget is not None:
            other.budget = self.budget.at(priority)
        other.project_keys = {
            pid: ProjectKey(k.api_key, k.budget.at(priority) if k.budget else None)
            for pid, k in self.project_keys.items()
        }
        if retries is not None:
            other.retries = retries
        return other

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ----------------------------------------------------------------
    def _path(self, project_id: str, *parts: str) -> str:
        """An API path; every segment quoted, so an id can never change the path."""
        segments = [self.workspace, "projects", project_id, *parts]
        if any(p in ("", ".", "..") for p in segments):
            raise PlaneError(f"invalid path segment in {segments!r}", retryable=False)
        return "/api/v1/workspaces/" + "".join(f"{quote(p, safe='')}/" for p in segments)

    def _backoff(self, attempt: int) -> float:
        return float(self._backoff_base_s * (2**attempt) * (0.5 + random.random()))

    def _retry_after(self, resp: httpx.Response, attempt: int) -> float:
        header = resp.headers.get("Retry-After")
        if header is not None:
            try:
                return min(float(header), self._max_retry_after_s)
            except ValueError:
                pass
        reset = resp.headers.get("X-RateLimit-Reset")
        if reset is not None:
            try:
                return min(max(float(reset) - time.time(), 0.0), self._max_retry_after_s)
            except ValueError:
                pass
        return self._backoff(attempt)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        project_id: str | None = None,
    ) -> Any:
        """One API call with retries; returns parsed JSON (None for an empty body).

        `project_id`: the project the call is about, whose own key (if it has one) is
        sent and whose budget is spent."""
        what = f"{method} {path}"
        own = self.project_keys.get(project_id or "")
        budget = own.budget if own is not None else self.budget
        key = own.api_key if own is not None else self._key
        headers = {"X-API-Key": key} if key else None
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            ticket, self._prepaid = self._prepaid, 0
            if not ticket and budget is not None:
                ticket = budget.acquire()
            self.count("plane_calls")
            try:
                resp = self._http.request(method, path, params=params, json=json, headers=headers)
            except httpx.InvalidURL as exc:  # the same request fails the same way again
                raise PlaneError(f"{what}: invalid request: {exc}", retryable=False) from exc
            except httpx.TransportError as exc:  # connect errors and timeouts
                self.count("plane_transport_errors")
                if last:
                    raise PlaneError(f"{what}: {type(exc).__name__}: {exc}") from exc
                self._sleep(self._backoff(attempt))
                continue
            self._observe(budget, ticket, resp)
            if resp.status_code == 429:
                self.count("plane_429")
                wait = self._retry_after(resp, attempt)
                if budget is not None:
                    budget.hold(wait)  # every process waits, not only this one
                if last:
                    raise PlaneError(f"{what}: rate limited (429)", 429)
                if budget is None:
                    self._sleep(wait)
                continue
            if resp.status_code >= 500:
                self.count("plane_5xx")
                if last:
                    raise PlaneError(f"{what}: server error {resp.status_code}", resp.status_code)
                self._sleep(self._backoff(attempt))
                continue
            if resp.status_code >= 400:
                raise PlaneError(
                    f"{what}: {resp.status_code} {resp.text[:200]}",
                    resp.status_code,
                    body=resp.text[:4000],
                )
            if not resp.content:
                return None
            try:
                return resp.json()
            except ValueError as exc:
                raise PlaneError(f"{what}: answer is not JSON", resp.status_code) from exc
        raise PlaneError(f"{what}: no attempt made")  # retries < 0

    @staticmethod
    def _observe(budget: RateBudget | None, ticket: int, resp: httpx.Response) -> None:
        """Tell the budget what the server says is left for the key."""
        header = resp.headers.get("X-RateLimit-Remaining")
        if ticket and budget is not None and header is not None:
            try:
                remaining = int(header)
            except ValueError:
                return
            budget.observe(ticket, remaining)
