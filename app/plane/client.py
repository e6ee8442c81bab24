"""An httpx client for Plane's REST API v1 (the subset planeflow uses).

Every call has a timeout, goes through the shared rate budget, retries connection
errors and 5xx with exponential backoff and jitter, and honours 429 `Retry-After`.
Failures surface as PlaneError, which says whether a retry may help (`retryable`);
writes go through the Plane outbox (`app.outbox`), which retries them, so an outbound
call never crashes a pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from app.domain.errors import PlaneError
from app.plane.models import Comment, Page, PlaneState, PlaneUser, WorkItem
from app.plane.transport import MAX_PER_PAGE, PlaneTransport, ProjectKey

__all__ = ["MAX_PER_PAGE", "PlaneClient", "ProjectKey"]


class PlaneClient(PlaneTransport):
    """Plane's resources over the transport."""

    def _parse(self, model: Any, data: Any, what: str) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise PlaneError(f"{what}: unexpected answer shape: {exc.errors()[0]['msg']}") from exc

    def _pages(
        self, path: str, params: dict[str, Any], project_id: str | None = None
    ) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            query = dict(params)
            if cursor:
                query["cursor"] = cursor
            answer = self.request("GET", path, params=query, project_id=project_id)
            page: Page = self._parse(Page, answer, path)
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

    def list_members(self, project_id: str) -> list[PlaneUser]:
        """The project's members: a plain JSON list on Plane 1.3.1, no envelope."""
        path = self._path(project_id, "members")
        answer = self.request("GET", path, project_id=project_id)
        if isinstance(answer, dict):  # tolerate an envelope, should a version add one
            answer = answer.get("results", [])
        if not isinstance(answer, list):
            raise PlaneError(f"{path}: unexpected answer shape: expected a list")
        return [self._parse(PlaneUser, raw, path) for raw in answer]

    def list_states(self, project_id: str) -> list[PlaneState]:
        path = self._path(project_id, "states")
        return [
            self._parse(PlaneState, raw, path)
            for raw in self._pages(path, {"per_page": MAX_PER_PAGE}, project_id)
        ]

    def create_state(self, project_id: str, name: str, group: str, color: str) -> PlaneState:
        """Create a state; an existing name (409) answers with the existing state."""
        path = self._path(project_id, "states")
        try:
            body = {"name": name, "group": group, "color": color}
            data = self.request("POST", path, json=body, project_id=project_id)
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
        for raw in self._pages(path, params, project_id):
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
        answer = self.request("GET", path, params=params, project_id=project_id)
        page: Page = self._parse(Page, answer, path)
        items = [self._parse(WorkItem, raw, path) for raw in page.results]
        more = page.next_page_results and page.next_cursor
        return items, (page.next_cursor if more else None)

    def get_work_item(self, project_id: str, item_id: str) -> WorkItem:
        path = self._path(project_id, "work-items", item_id)
        item: WorkItem = self._parse(
            WorkItem,
            self.request("GET", path, params={"expand": "state"}, project_id=project_id),
            path,
        )
        return item

    def patch_work_item(self, project_id: str, item_id: str, **fields: Any) -> WorkItem:
        path = self._path(project_id, "work-items", item_id)
        answer = self.request("PATCH", path, json=fields, project_id=project_id)
        item: WorkItem = self._parse(WorkItem, answer, path)
        return item

    def list_comments(self, project_id: str, item_id: str) -> list[Comment]:
        path = self._path(project_id, "work-items", item_id, "comments")
        return [
            self._parse(Comment, raw, path)
            for raw in self._pages(path, {"per_page": MAX_PER_PAGE}, project_id)
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
            data = self.request("POST", path, json=body, project_id=project_id)
        except PlaneError as exc:
            if exc.status != 409:
                raise
            try:
                existing = json.loads(exc.body).get("id")
            except (ValueError, AttributeError):
                existing = None
            return str(existing or ""), False
        return str((data or {}).get("id", "")), True
