"""The handlers: start / resume, human verdict, cancel. Layer A decides; Plane only triggers.

Every handler runs under the work item's lock (redis-py Lock: owner token + TTL), reads
the task as it is now, and records its decision — including every "ignored" — on the
task's timeline with the reason, so `planeflow explain` can answer "why didn't it
start?". A second call with the same input finds the state the first one left and
does nothing new: that is what makes them safe to replay.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from app import logs
from app.apply import Applied, apply_decision
from app.domain.decisions import (
    CancelledInPlane,
    Policy,
    Resumed,
    VerdictGiven,
    decide,
    task_view,
)
from app.domain.models import Job, Task
from app.domain.naming import branch_name, work_item_id
from app.domain.results import Handled, Result, TimelineKind, ignored
from app.domain.stages import FINISHED_STAGES, Stage
from app.plane.client import PlaneClient
from app.plane.models import Comment, WorkItem
from app.projects import Project
from app.store import Store

log = logging.getLogger(__name__)
NO_POLICY = Policy(max_rework=0)  # for decisions that do not count rework loops


class JobSender(Protocol):
    def send_job(self, job_id: str, *, delay_ms: int | None = None) -> str: ...


class PlaneWrites(Protocol):
    """The Plane outbox as deciders see it (`app.outbox.PlaneOutbox`)."""

    def show_stage(self, task_id: str) -> None: ...

    def comment(self, task_id: str, html: str, external_id: str = "") -> None: ...

    def note(self, task_id: str, html: str) -> None: ...

    def post_notes(self, task_id: str, lead: str = "") -> None: ...

    def wake(self, task_id: str) -> None: ...


@dataclass
class Pipeline:
    store: Store
    outbox: PlaneWrites
    plane: PlaneClient
    jobs: JobSender
    own_user_id: str | None = None
    own_users: frozenset[str] = frozenset()  # every user planeflow writes as (echoes)

    # -- start / resume --------------------------------------------------------------
    def handle_status_start(
        self, issue: WorkItem, project: Project, *, source: str = "webhook"
    ) -> Result:
        """Create the task (first trigger) or resume a blocked one; else ignore, with reason.

        Idempotent: create_task_atomic returns created=True once per work item, and a
        task that is not blocked is never restarted.
        """
        after: list[Callable[[], object]] = []
        with self.store.issue_lock(issue.id):
            decision = self._start(issue, project, source, after)
        run_after(after)
        return decision

    def _start(
        self, issue: WorkItem, project: Project, source: str, after: list[Callable[[], object]]
    ) -> Result:
        task = self.store.get_task_by_issue(issue.id)
        if task is None:
            purged = self.store.tombstone(issue.id)
            if purged is not None:  # a late delivery or a replay of a purged item
                reason = (
                    f"work item {purged['work_item']} was purged after it ended "
                    f"{purged['stage']} (task {purged['task_id']})"
                )
                log.info("start ignored: %s [%s]", reason, source)
                return ignored(reason)
            wi = work_item_id(project.work_item_prefix, issue.sequence_id, issue.id)
            task, created = self.store.create_task_atomic(
                issue.id,
                wi,
                project.repo,
                branch_name(wi, issue.name),
                Stage.ANALYSIS,
                issue.name,
                project=project.name,
            )
            if created:
                task = self.store.update_task(
                    task.id, description=item_text(issue), plane_state_id=issue.state_id
                )
                with logs.bind(task_id=task.id, work_item=wi, stage=task.stage.value):
                    log.info("task created (%s)", source)
                self.store.record(task.id, TimelineKind.START, f"started by {source}")
                self._enqueue(task, after)
                return Result(Handled.STARTED, stage=task.stage)
        if task.stage is Stage.BLOCKED:
            task = self.store.update_task(task.id, title=issue.name, description=item_text(issue))
            return self._resume(task, issue, source, after)
        reason = (
            f"task already {task.stage.value}"
            if task.stage in FINISHED_STAGES
            else f"task already running (stage {task.stage.value})"
        )
        self.store.record(task.id, TimelineKind.IGNORED, f"ignored: {reason} [{source}]")
        return ignored(reason)

    def _resume(
        self, task: Task, issue: WorkItem, source: str, after: list[Callable[[], object]]
    ) -> Result:
        return resume(self.store, self.jobs, self.outbox, task, source, after, issue.state_id)

    def _applied(self, applied: Applied, after: list[Callable[[], object]]) -> None:
        sends_of(applied, self.jobs, self.outbox, after)

    # -- verdict ----------------------------------------------------------------------
    def handle_verdict(
        self, issue: WorkItem, project: Project, *, approved: bool, source: str = "webhook"
    ) -> Result:
        """Approved: review -> merge. Rejected: review -> development, comments as feedback.

        Acts only on a task in `review` with no active job; a second verdict finds the
        task already moved and is ignored with its reason.
        """
        after: list[Callable[[], object]] = []
        with self.store.issue_lock(issue.id):
            decision = self._verdict(issue, project, approved, source, after)
        run_after(after)
        return decision

    def _verdict(
        self,
        issue: WorkItem,
        project: Project,
        approved: bool,
        source: str,
        after: list[Callable[[], object]],
    ) -> Result:
        verdict = "approved" if approved else "rejected"
        task = self.store.get_task_by_issue(issue.id)
        if task is None:
            log.info("verdict %s for %s ignored: no task", verdict, issue.id)
            return ignored("no task")
        if task.stage is not Stage.REVIEW:
            reason = f"verdict {verdict} for task not in review (stage {task.stage.value})"
            self.store.record(task.id, TimelineKind.IGNORED, f"ignored: {reason} [{source}]")
            return ignored(reason)
        active = self.store.active_job(task)
        if active is not None:
            reason = f"verdict {verdict} while job {active.id} is active"
            self.store.update_task(task.id, touch=False, verdict_early=True)  # looked at after
            self.store.record(task.id, TimelineKind.IGNORED, f"ignored: {reason} [{source}]")
            return ignored(reason)
        feedback = "" if approved else self._review_feedback(task, project)
        decision = decide(
            task_view(task),
            VerdictGiven(approved, source, feedback),
            Policy(project.max_rework),
        )
        applied = apply_decision(self.store, task.id, decision, seen_state=issue.state_id)
        self._applied(applied, after)
        return Result(Handled.MOVED, f"{verdict}: moved to {decision.stage.value}", decision.stage)

    def _review_feedback(self, task: Task, project: Project) -> str:
        """Human comments posted since the task entered review, oldest first."""
        try:
            comments = self.plane.list_comments(project.plane_project_id, task.plane_issue_id)
        except Exception as exc:  # feedback is best effort; the verdict still counts
            log.warning("task %s: cannot read review comments: %s", task.id, exc)
            self.store.record(task.id, TimelineKind.WARNING, f"review comments unavailable: {exc}")
            return ""
        since = task.review_started_at
        return "\n\n".join(
            strip_html(c.comment_html) for c in comments if _is_feedback(c, since, self.own_users)
        )

    # -- cancel -----------------------------------------------------------------------
    def handle_cancel(
        self, issue: WorkItem, project: Project, *, source: str = "webhook"
    ) -> Result:
        """Cancel the task and its active job. A finished or absent task is left alone."""
        with self.store.issue_lock(issue.id):
            task = self.store.get_task_by_issue(issue.id)
            if task is None:
                return ignored("no task")
            if task.stage in FINISHED_STAGES:
                reason = f"cancel of a task already {task.stage.value}"
                self.store.record(task.id, TimelineKind.IGNORED, f"ignored: {reason} [{source}]")
                return ignored(reason)
            # The active job is cancelled with the move (its runner kills the agent).
            decision = decide(task_view(task), CancelledInPlane(source), NO_POLICY)
            apply_decision(self.store, task.id, decision)
            return Result(Handled.CANCELLED, stage=Stage.CANCELLED)

    # -- jobs -------------------------------------------------------------------------
    def _enqueue(self, task: Task, after: list[Callable[[], object]]) -> Job | None:
        """Create the stage's job now (under the lock); its message after the lock."""
        job = self.store.create_job(task.id, task.stage)
        self.outbox.show_stage(task.id)
        if job is None:
            self.store.record(
                task.id, TimelineKind.IGNORED, "job not queued: another job is active"
            )
            return None
        after.append(lambda: self.jobs.send_job(job.id))
        return job


def resume(
    store: Store,
    jobs: JobSender,
    outbox: PlaneWrites,
    task: Task,
    source: str,
    after: list[Callable[[], object]],
    seen_state: str | None = None,
) -> Result:
    """A blocked task back to the stage that failed (a start trigger, or an operator's
    retry); call under the work item's lock, the sends go to `after`."""
    decision = decide(task_view(task), Resumed(source), NO_POLICY)
    applied = apply_decision(store, task.id, decision, seen_state=seen_state)
    sends_of(applied, jobs, outbox, after)
    return Result(Handled.RESUMED, f"at {decision.stage.value}", decision.stage)


def sends_of(
    applied: Applied, jobs: JobSender, outbox: PlaneWrites, after: list[Callable[[], object]]
) -> None:
    """The sends of an applied decision, for after the lock: its new job, the outbox."""
    new, task_id = applied.job, applied.task.id
    if new is not None:
        after.append(lambda: jobs.send_job(new.id))
    after.append(lambda: outbox.wake(task_id))


def item_text(item: WorkItem) -> str:
    return item.description_stripped or item.description_html or ""


def run_after(actions: list[Callable[[], object]]) -> None:
    """Follow-ups of a decision, once the work item's lock is released (Plane, queue)."""
    for action in actions:
        try:
            action()
        except Exception as exc:  # never-raise: a failed send is re-sent by the sweep
            log.warning("follow-up failed: %s", exc)


def _is_feedback(comment: Comment, since: datetime | None, own: frozenset[str]) -> bool:
    author = comment.actor or comment.created_by
    if author in own:
        return False
    return since is None or comment.created_at >= since


def strip_html(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html).strip()
