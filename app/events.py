"""From a stored webhook event to a pipeline handler: observe, compare, act.

Plane sends one delivery per changed field, in no guaranteed order, so the event is
only a hint: the processor routes on the work item's *current* state. That is the
newest human delivery's snapshot (`data`, by `updated_at`, kept by the receiver) when it
arrived within `snapshot_fresh_s` — no Plane read — and otherwise a read of Plane;
replays, rechecks and the reconciler always read Plane.
Events caused by our own status writes (the actor is our Plane user) are echoes and
change nothing. The reconciler replays through `route`, the same path. A comment event
goes to the comment commands (`app.commands`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from app import logs
from app.commands import CommentCommands
from app.domain.errors import PlaneError, TemporaryError
from app.domain.ids import why_not_uuid
from app.domain.models import Task
from app.domain.results import Result, TimelineKind, ignored
from app.pipeline import Pipeline
from app.plane.client import PlaneClient
from app.plane.models import WorkItem
from app.plane.ratelimit import key_digest
from app.plane.status import StateResolver, Trigger
from app.projects import Project, Registry
from app.store import Store

log = logging.getLogger(__name__)


class EventProcessor:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        plane: PlaneClient,
        resolver: StateResolver,
        pipeline: Pipeline,
        *,
        snapshot_fresh_s: float = 120.0,
        clock: Callable[[], float] = time.time,
        commands: CommentCommands | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.plane = plane
        self.resolver = resolver
        self.pipeline = pipeline
        self.snapshot_fresh_s = snapshot_fresh_s
        self.clock = clock
        self.commands = commands

    def process(self, payload: dict[str, Any]) -> Result:
        """Handle one `process_event` message; TemporaryError asks Dramatiq to retry.

        Clears the work item's fold marker first, so a delivery that arrives while the
        work item is read queues a new event instead of folding into this one.
        """
        event_id = str(payload.get("event_id", "?"))
        project = self.registry.by_plane_id(str(payload.get("project_id")))
        issue_id = payload.get("issue_id")
        if project is None or not issue_id:
            return ignored("unknown project or no work item")
        invalid = why_not_uuid("work item id", issue_id)
        if invalid:  # never reaches a URL or a key; a retry cannot fix it
            log.warning("event %s ignored: %s", event_id, invalid)
            return ignored(invalid)
        self.store.clear_fold(issue_id, event_id)
        self._lag(event_id)
        task = self.store.get_task_by_issue(issue_id)
        with logs.bind(
            project=project.name,
            work_item=task.work_item_id if task else None,
            task_id=task.id if task else None,
            stage=task.stage.value if task else None,
        ):
            result = self._handle(payload, project, issue_id, event_id)
            log.info("event %s (%s %s): %s", event_id, payload.get("event"), issue_id, result)
        return result

    def _lag(self, event_id: str) -> None:
        """Time from the receiver storing the event (its stream id's milliseconds) to now."""
        stored_ms, _, _ = event_id.partition("-")
        if stored_ms.isdigit():
            lag = max(self.clock() - int(stored_ms) / 1000, 0.0)
            self.store.observe("webhook_lag_seconds", "plane", lag)

    def _handle(
        self, payload: dict[str, Any], project: Project, issue_id: str, event_id: str
    ) -> Result:
        source = f"webhook {event_id}"
        if payload.get("event") == "issue_comment":
            if self.commands is None:
                return ignored("comment commands are not set up in this process")
            return self.commands.handle(project, issue_id, event_id)
        if payload.get("actor_id") in self.pipeline.own_users:
            return self._echo(issue_id, source)
        # Until this human move is handled, the outbox does not write over it.
        self.store.human_event_started(issue_id, event_id)
        try:
            item = None if payload.get("replay") else self._snapshot(project, issue_id)
            if item is not None:
                return self.route(item, project, source=source)
            return self._read_and_route(project, issue_id, event_id, source)
        finally:
            self.store.human_event_done(issue_id, event_id)

    def _echo(self, issue_id: str, source: str) -> Result:
        task = self.store.get_task_by_issue(issue_id)
        if task is not None:
            self.store.record(
                task.id, TimelineKind.IGNORED, f"ignored: echo of own status write [{source}]"
            )
        return ignored("echo of own status write")

    def _snapshot(self, project: Project, issue_id: str) -> WorkItem | None:
        """The work item as the newest human webhook showed it, if that arrived within
        `snapshot_fresh_s`: no Plane read. None (read Plane) otherwise."""
        found = self.store.snapshot_event(issue_id)
        if found is None or self.snapshot_fresh_s <= 0:
            return None
        _, fields = found
        try:
            received = datetime.fromisoformat(fields["received_at"]).timestamp()
            if self.clock() - received > self.snapshot_fresh_s:
                return None
            item = WorkItem.model_validate(orjson.loads(fields["body"])["data"])
        except (KeyError, TypeError, ValueError):  # pydantic's ValidationError included
            return None
        if item.id != issue_id or item.project not in (None, project.plane_project_id):
            return None
        self.store.incr_counter("plane_reads_saved")
        return item

    def _read_and_route(
        self, project: Project, issue_id: str, event_id: str, source: str
    ) -> Result:
        try:
            item = self.plane.get_work_item(project.plane_project_id, issue_id)
        except PlaneError as exc:
            if exc.status == 404:
                return ignored("work item no longer exists")
            if not exc.retryable:
                log.warning("event %s: cannot read work item %s: %s", event_id, issue_id, exc)
                return ignored(f"cannot read the work item ({exc})")
            raise TemporaryError(f"cannot read work item {issue_id}: {exc}") from exc
        return self.route(item, project, source=source)

    def route(self, item: WorkItem, project: Project, *, source: str) -> Result:
        """Send a work item in its current state to the matching handler."""
        states = self.resolver.resolve(project)
        if item.state_id and states.by_id(item.state_id) is None:
            states = self.resolver.resolve(project, refresh=True)  # a state added since
        trigger = states.trigger_of(item.state_id)
        if trigger is Trigger.START:
            return self.pipeline.handle_status_start(item, project, source=source)
        if trigger in (Trigger.APPROVED, Trigger.REJECTED):
            return self.pipeline.handle_verdict(
                item, project, approved=trigger is Trigger.APPROVED, source=source
            )
        if trigger is Trigger.CANCEL:
            return self.pipeline.handle_cancel(item, project, source=source)
        state = states.by_id(item.state_id or "")
        reason = f"state {state.name if state else item.state_id!r} is not a trigger"
        task = self.store.get_task_by_issue(item.id)
        if task is not None:
            self.store.record(task.id, TimelineKind.IGNORED, f"ignored: {reason} [{source}]")
        return ignored(reason)

    def recheck(self, task: Task, project: Project) -> Result:
        """Route the work item's current state again (e.g. a verdict given too early)."""
        try:
            item = self.plane.get_work_item(project.plane_project_id, task.plane_issue_id)
        except PlaneError as exc:
            log.warning("task %s: cannot re-read the work item: %s", task.id, exc)
            return ignored("recheck failed: the work item could not be read")
        states = self.resolver.resolve(project)
        if states.trigger_of(item.state_id) not in (Trigger.APPROVED, Trigger.REJECTED):
            return ignored("no verdict yet")
        return self.route(item, project, source="verdict given while the review job ran")


def replay(
    store: Store,
    registry: Registry,
    processor: EventProcessor,
    *,
    event_id: str | None = None,
    since: str | None = None,
) -> list[tuple[str, Result]]:
    """Run stored Plane events (`pf:events`) through the same handlers again.

    Safe by construction: the handlers read the current state and are idempotent, so a
    replay can only do what a late webhook would. Returns (event id, decision) pairs.
    """
    start, end = (event_id, event_id) if event_id else (since or "-", "+")
    out = []
    for entry_id, fields in store.stored_events(start, end):
        if fields.get("source") != "plane" or fields.get("event") != "issue":
            continue
        project = registry.get(fields.get("project", ""))
        if project is None:
            out.append((entry_id, ignored(f"project {fields.get('project')!r} unknown")))
            continue
        payload = {
            "project_id": project.plane_project_id,
            "issue_id": fields.get("issue"),
            "actor_id": fields.get("actor"),
            "event_id": f"{entry_id} (replay)",
            "replay": True,  # a replay reads Plane: the stored snapshot may be old
        }
        out.append((entry_id, processor.process(payload)))
    return out


def own_user_id(configured: str | None, store: Store, plane: PlaneClient) -> str | None:
    """Our Plane user id: configured, cached in Redis, or asked once from `users/me`."""
    if configured:
        return configured
    cached = store.own_user()
    if cached:
        return cached
    try:
        me = plane.me().id
    except (PlaneError, TemporaryError) as exc:
        log.warning("cannot discover our Plane user (echo suppression off for now): %s", exc)
        return None
    store.remember_own_user(me)
    return me


def own_users(default: str | None, store: Store, plane: PlaneClient) -> frozenset[str]:
    """Every Plane user planeflow writes as: the default key's and each project key's
    (each asked once from `users/me`, then kept in Redis), for echo suppression."""
    users = {default} if default else set()
    asked: set[str] = set()
    for project_id, key in plane.project_keys.items():
        digest = key_digest(key.api_key)
        known = store.key_user(digest)
        if known is None and digest not in asked:
            asked.add(digest)
            client = plane.for_key(project_id)
            try:
                known = client.me().id if client is not None else None
            except (PlaneError, TemporaryError) as exc:
                log.warning("cannot discover the Plane user of a project's key: %s", exc)
            if known:
                store.remember_key_user(digest, known)
        if known:
            users.add(known)
    return frozenset(users | store.own_users())
