"""An httpx client for Plane's REST API v1 (the subset planeflow uses).

Every call has a timeout, goes through the shared rate budget, retries connection
errors and 5xx with exponential backoff and jitter, and honours 429 `Retry-After`.
Failures surface as PlaneError, which says whether a retry may help (`retryable`);
writes go through the Plane outbox (`app.outbox`), which retries them, so an outbound
call never crashes a pipeline.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from app.domain.errors import PlaneError
from app.plane.models import Comment, Page, PlaneState, PlaneUser, WorkItem
from app.plane.ratelimit import Priority, RateBudget

log = logging.getLogger(__name__)

Counter = Callable[[str], None]
MAX_PER_PAGE = 1000


def _no_count(name: str) -> None:
    return None


class PlaneClient:
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
    ) -> None:
        self.workspace = workspace
        self.retries = retries
        self.budget = budget
        self._prepaid = 0
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

    def prepaid(self, ticket: int) -> PlaneClient:
        """This client for one request whose budget was already taken (`try_acquire`'s
        ticket): its first attempt does not ask the budget again."""
        other = copy.copy(self)
        other._prepaid = ticket
        return other

    def at_priority(self, priority: Priority, *, retries: int | None = None) -> PlaneClient:
        """This client (same connection pool) spending the budget at `priority`."""
        other = copy.copy(self)
        if self.budget is not None:
            other.budget = self.budget.at(priority)
        if retries is not None:
            other.retries = retries
        return other

    def __enter__(self) -> PlaneClient:
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
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None
    ) -> Any:
        """One API call with retries; returns parsed JSON (None for an empty body)."""
        what = f"{method} {path}"
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            ticket, self._prepaid = self._prepaid, 0
            if not ticket and self.budget is not None:
                ticket = self.budget.acquire()
            self.count("plane_calls")
            try:
                resp = self._http.request(method, path, params=params, json=json)
            except httpx.InvalidURL as exc:  # the same request fails the same way again
                raise PlaneError(f"{what}: invalid request: {exc}", retryable=False) from exc
            except httpx.TransportError as exc:  # connect errors and timeouts
                self.count("plane_transport_errors")
                if last:
                    raise PlaneError(f"{what}: {type(exc).__name__}: {exc}") from exc
                self._sleep(self._backoff(attempt))
                continue
            self._observe(ticket, resp)
            if resp.status_code == 429:
                self.count("plane_429")
                wait = self._retry_after(resp, attempt)
                if self.budget is not None:
                    self.budget.hold(wait)  # every process waits, not only this one
                if last:
                    raise PlaneError(f"{what}: rate limited (429)", 429)
                if self.budget is None:
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

    def _observe(self, ticket: int, resp: httpx.Response) -> None:
        """Tell the budget what the server says is left for the key."""
        header = resp.headers.get("X-RateLimit-Remaining")
        if ticket and self.budget is not None and header is not None:
            try:
                remaining = int(header)
            except ValueError:
                return
            self.budget.observe(ticket, remaining)

    def _parse(self, model: Any, data: Any, what: str) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise PlaneError(f"{what}: unexpected answer shape: {exc.errors()[0]['msg']}") from exc

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            query = dict(params)
            if cursor:
                query["cursor"] = cursor
            page: Page = self._parse(Page, self.request("GET", path, params=query), path)
            yield from page.results
            # next_cursor is set even on the last page: next_page_results decides.
            if not page.next_page_results or not page.next_cursor:
                return
            cursor = page.next_cursor

    # -- resources ----------------------------------------------------------------
    def me(self) -> PlaneUser:
        user: PlaneUser = self._parse(
            PlaneUser, self.request("GET", "/api/v1/users/me/"), "users/me"
        )
        return user

    def list_states(self, project_id: str) -> list[PlaneState]:
        path = self._path(project_id, "states")
        return [
            self._parse(PlaneState, raw, path)
            for raw in self._pages(path, {"per_page": MAX_PER_PAGE})
        ]

    def create_state(self, project_id: str, name: str, group: str, color: str) -> PlaneState:
        """Create a state; an existing name (409) answers with the existing state."""
        path = self._path(project_id, "states")
        try:
            data = self.request("POST", path, json={"name": name, "group": group, "color": color})
        except PlaneError as exc:
            if exc.status != 409:
                raise
            existing = [s for s in self.list_states(project_id) if s.name == name]
            if not existing:
                raise
            return existing[0]
        state: PlaneState = self._parse(PlaneState, data, path)
        return state

    def iter_work_items(
        self,
        project_id: str,
        *,
        per_page: int = 100,
        order_by: str | None = None,
        updated_after: datetime | None = None,
    ) -> Iterator[WorkItem]:
        """Walk every page. With `updated_after`, list newest first and stop early."""
        path = self._path(project_id, "work-items")
        params: dict[str, Any] = {"per_page": min(per_page, MAX_PER_PAGE)}
        if updated_after is not None:
            order_by = "-updated_at"
        if order_by:
            params["order_by"] = order_by
        for raw in self._pages(path, params):
            item: WorkItem = self._parse(WorkItem, raw, path)
            if updated_after is not None and item.updated_at < updated_after:
                return
            yield item

    def work_items_page(
        self,
        project_id: str,
        *,
        cursor: str | None = None,
        per_page: int = MAX_PER_PAGE,
        order_by: str = "created_at",
    ) -> tuple[list[WorkItem], str | None]:
        """One page of the listing (the reconciler's rolling scan): its items and the
        cursor of the next page, None after the last."""
        path = self._path(project_id, "work-items")
        params: dict[str, Any] = {"per_page": min(per_page, MAX_PER_PAGE), "order_by": order_by}
        if cursor:
            params["cursor"] = cursor
        page: Page = self._parse(Page, self.request("GET", path, params=params), path)
        items = [self._parse(WorkItem, raw, path) for raw in page.results]
        more = page.next_page_results and page.next_cursor
        return items, (page.next_cursor if more else None)

    def get_work_item(self, project_id: str, item_id: str) -> WorkItem:
        path = self._path(project_id, "work-items", item_id)
        item: WorkItem = self._parse(
            WorkItem, self.request("GET", path, params={"expand": "state"}), path
        )
        return item

    def patch_work_item(self, project_id: str, item_id: str, **fields: Any) -> WorkItem:
        path = self._path(project_id, "work-items", item_id)
        item: WorkItem = self._parse(WorkItem, self.request("PATCH", path, json=fields), path)
        return item

    def list_comments(self, project_id: str, item_id: str) -> list[Comment]:
        path = self._path(project_id, "work-items", item_id, "comments")
        return [
            self._parse(Comment, raw, path) for raw in self._pages(path, {"per_page": MAX_PER_PAGE})
        ]

    def create_comment(
        self,
        project_id: str,
        item_id: str,
        html: str,
        *,
        external_id: str,
        external_source: str = "planeflow",
    ) -> tuple[str, bool]:
        """Post a comment once: (comment id, created). Plane answers a second POST with
        the same (external_source, external_id) with 409 and the existing comment's id,
        so a comment whose answer was lost is never posted twice."""
        path = self._path(project_id, "work-items", item_id, "comments")
        body = {
            "comment_html": html,
            "external_id": external_id,
            "external_source": external_source,
        }
        try:
            data = self.request("POST", path, json=body)
        except PlaneError as exc:
            if exc.status != 409:
                raise
            try:
                existing = json.loads(exc.body).get("id")
            except (ValueError, AttributeError):
                existing = None
            return str(existing or ""), False
        return str((data or {}).get("id", "")), True
