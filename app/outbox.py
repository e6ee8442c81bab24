"""The Plane outbox flusher: writes what a task should show and say, until Plane takes it.

Decisions put their Plane effects in the outbox (`app.outbox_store`) in Redis and go
on; nothing a job or a handler decides waits for Plane, and nothing meant for Plane is
dropped. `flush(task_id)` — the `flush_outbox` actor — runs one task's writes, one
flusher per task at a time (a Redis lock), so they reach Plane in order:

1. the statuses: each stage the task moved into, in order, when the budget has room at
   once — otherwise only the latest, which is the task's stage *now* (so an older status
   is never written after a newer one), and never one Plane already shows;
2. the comments, oldest first, each with its `external_id`: Plane answers a repeat with
   409 and the existing comment's id, so a comment whose answer was lost is not posted
   twice.

A failure Plane may get over (connection refused, timeout, 5xx, 429, budget) keeps
everything and tries again with backoff (2, 4, ... 60 s); one it will not (another 4xx)
is recorded on the timeline as failed and not retried.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from app import logs
from app.domain.errors import PlaneError, TemporaryError
from app.domain.models import Task
from app.domain.results import TimelineKind
from app.outbox_status import BUDGET_WAIT_S, StatusWriter, budget_ticket
from app.outbox_store import OutboxStore
from app.plane.client import PlaneClient
from app.plane.status import StateResolver
from app.projects import Project, Registry
from app.store import Store

log = logging.getLogger(__name__)

Notify = Callable[[str, int | None], object]  # (task id, delay in ms)
MAX_BACKOFF_S = 60.0
HUMAN_MOVE_WAIT_S = 1.0


class Flushed(StrEnum):
    DONE = "done"  # nothing left for Plane
    RETRY = "retry"  # Plane did not take everything; tried again later
    BUSY = "busy"  # another flusher holds the task; it is asked again shortly
    GONE = "gone"  # no such task
    DEFERRED = "deferred"  # a human's move is being handled first


@dataclass(frozen=True)
class FlushReport:
    result: Flushed
    status_written: bool = False
    comments_posted: int = 0
    error: str = ""


class OutboxFlusher:
    def __init__(
        self,
        store: Store,
        outbox: OutboxStore,
        status_client: PlaneClient,
        comment_client: PlaneClient,
        resolver: StateResolver,
        registry: Registry,
        notify: Notify,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.statuses = StatusWriter(store, outbox, status_client, resolver)
        self.comment_client = comment_client
        self.resolver = resolver
        self.registry = registry
        self.notify = notify
        self.clock = clock

    def flush(self, task_id: str) -> FlushReport:
        """One task's writes (the `flush_outbox` actor), logged with the task's fields."""
        task = self.store.get_task(task_id)
        with logs.bind(
            task_id=task_id,
            work_item=task.work_item_id if task else None,
            stage=task.stage.value if task else None,
            project=task.project if task else None,
        ):
            report = self._flush_locked(task_id)
            log.info(
                "outbox: %s (status written: %s, comments posted: %d)%s",
                report.result.value,
                report.status_written,
                report.comments_posted,
                f": {report.error}" if report.error else "",
            )
        return report

    def _flush_locked(self, task_id: str) -> FlushReport:
        lock = self.outbox.lock(task_id)
        if not lock.acquire(blocking=False):
            self.notify(task_id, 1000)  # what was added meanwhile is not forgotten
            return FlushReport(Flushed.BUSY)
        try:
            return self._flush(task_id)
        finally:
            try:
                lock.release()
            except Exception as exc:
                log.warning("outbox %s: lock release: %s", task_id, exc)

    def _flush(self, task_id: str) -> FlushReport:
        # A backoff scheduled by an earlier failed attempt counts as seen, too.
        started = max(self.clock(), self.outbox.scheduled_at(task_id) or 0.0)
        data, moved = self.outbox.snapshot(task_id)
        task = Task.from_hash(data) if data else None
        if task is None:
            self.outbox.drop_all(task_id)
            self.outbox.settle(task_id, started)
            return FlushReport(Flushed.GONE)
        project = self.registry.get(task.project)
        if project is None:
            dropped = self.outbox.drop_all(task_id)
            self.store.record(
                task.id,
                TimelineKind.OUTBOX,
                f"project {task.project!r} is not in the registry: "
                f"{dropped} Plane write(s) dropped",
            )
            self.outbox.settle(task_id, started)
            return FlushReport(Flushed.DONE)
        if moved and self.store.human_move_pending(task.plane_issue_id):
            # A human's move of this item waits to be handled: writing our status now
            # could hide it (their verdict would read as our "Code Review"). Soon again.
            self.outbox.schedule(task.id, self.clock() + HUMAN_MOVE_WAIT_S)
            self.notify(task.id, int(HUMAN_MOVE_WAIT_S * 1000))
            return FlushReport(Flushed.DEFERRED)
        try:
            written, later = self.statuses.write(task, project, moved)
            posted, comments_later = self._comments(task, project)
            later = max(later, comments_later)
        except (PlaneError, TemporaryError) as exc:
            return self._later(task, str(exc))
        if later:  # a passing status waits for a quieter moment (or a newer stage)
            self.outbox.schedule(task.id, self.clock() + later)
            self.notify(task.id, int(later * 1000))
            return FlushReport(Flushed.DEFERRED, written, posted)
        self.outbox.settle(task_id, started)
        return FlushReport(Flushed.DONE, written, posted)

    def _later(self, task: Task, error: str) -> FlushReport:
        tries = self.outbox.failed(task.id)
        delay = min(2.0**tries, MAX_BACKOFF_S) * (0.8 + 0.4 * random.random())
        self.outbox.schedule(task.id, self.clock() + delay)
        self.notify(task.id, int(delay * 1000))
        if tries == 1:
            self.store.record(
                task.id, TimelineKind.OUTBOX, f"Plane did not take the writes: {error[:300]}"
            )
        log.warning(
            "outbox %s: attempt %d failed (%s); next in %.0fs", task.id, tries, error, delay
        )
        return FlushReport(Flushed.RETRY, error=error)

    # -- status ------------------------------------------------------------------------
    def _comments(self, task: Task, project: Project) -> tuple[int, float]:
        """Post the pending comments in order; (how many, seconds to look again or 0)."""
        posted = 0
        while (comment := self.outbox.head(task.id)) is not None:
            ticket = budget_ticket(self.comment_client, project)
            if not ticket:  # the budget is busy: free this worker thread, look again soon
                return posted, BUDGET_WAIT_S
            try:
                _, created = self.comment_client.prepaid(ticket).create_comment(
                    project.plane_project_id,
                    task.plane_issue_id,
                    comment.html,
                    external_id=comment.key,
                )
            except PlaneError as exc:
                if exc.retryable:
                    self.outbox.tried(task.id, comment, str(exc))
                    raise
                self.outbox.pop(task.id, comment.key)
                self.store.record(
                    task.id,
                    TimelineKind.COMMENT,
                    f"comment {comment.key} refused by Plane, not retried: {str(exc)[:300]}",
                )
                self.store.incr_counter("comment_failures")
                continue
            except TemporaryError as exc:
                self.outbox.tried(task.id, comment, str(exc))
                raise
            self.outbox.pop(task.id, comment.key)
            what = "posted" if created else "already posted (Plane answered 409)"
            self.store.record(task.id, TimelineKind.COMMENT, f"comment {comment.key} {what}")
            posted += 1
        return posted, 0.0

    # -- the safety net ----------------------------------------------------------------
    def resend_overdue(self, grace_s: float = 30.0) -> int:
        """Send a flush for tasks whose writes are overdue (a lost or failed message)."""
        overdue = self.outbox.due(self.clock() - grace_s)
        for task_id in overdue:
            self.notify(task_id, None)
        return len(overdue)


class PlaneOutbox:
    """What deciders call: durable in Redis at once, sent to Plane by the flusher."""

    def __init__(self, outbox: OutboxStore, notify: Notify) -> None:
        self.outbox = outbox
        self.notify = notify

    def show_stage(self, task_id: str) -> None:
        """The task's Plane status should follow its stage (as it is when flushed)."""
        self.outbox.schedule(task_id)
        self._wake(task_id)

    def comment(self, task_id: str, html: str, external_id: str = "") -> None:
        """Post `html` on the task's work item, once, after those queued before it.
        A stable `external_id` makes a second call post nothing more (Plane's 409)."""
        self.outbox.add_comment(task_id, html, external_id)
        self._wake(task_id)

    def note(self, task_id: str, html: str) -> None:
        """Keep `html` for the task's next digest comment (nothing is sent yet)."""
        self.outbox.add_note(task_id, html)

    def post_notes(self, task_id: str, lead: str = "") -> None:
        """Post `lead` and the notes gathered so far as one comment."""
        if self.outbox.post_notes(task_id, lead):
            self._wake(task_id)

    def wake(self, task_id: str) -> None:
        """Have the flusher look at the task now (what to send is already in Redis)."""
        self._wake(task_id)

    def _wake(self, task_id: str) -> None:
        try:
            self.notify(task_id, None)
        except Exception as exc:  # the due set keeps it; the scheduler re-sends
            log.warning("outbox %s: cannot send the flush message now: %s", task_id, exc)
