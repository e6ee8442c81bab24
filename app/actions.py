"""Operator actions: retry a blocked task, cancel a task, requeue a dead-lettered message.

The dashboard, the CLI and commands in Plane comments all come here, each naming where
the action came from (`Origin`: the dashboard with the client's address, the CLI with
the OS user, a Plane comment with its author). A retry and a cancel are decisions like
any other (`decide` → `apply_decision`, under the work item's lock), so the stage
machine still decides: a retry resumes a blocked task at the stage that failed, a
cancel stops its job and shows *Cancelled* in Plane. Every action — done or refused,
with the reason — is recorded on the task's timeline and in the audit trail
(`pf:audit`). A second identical call finds the task moved and is refused with its
reason, so repeating an action is harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from app import logs
from app.apply import apply_decision
from app.domain.decisions import CancelRequested, decide, task_view
from app.domain.models import Task
from app.domain.results import Handled, Result, TimelineKind, ignored
from app.domain.stages import FINISHED_STAGES, Stage
from app.pipeline import NO_POLICY, PlaneWrites, resume, run_after
from app.queue import FLUSH_OUTBOX, PROCESS_EVENT, RUN_JOB, Dispatcher
from app.queue_state import DeadLetter, QueueState
from app.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Origin:
    """Where an action came from, as the timeline and the audit trail say it."""

    kind: str  # "dashboard" | "cli" | "comment"
    who: str  # a client address, an OS user, a Plane user

    def __str__(self) -> str:
        if self.kind == "dashboard":
            return f"dashboard (client {self.who})"
        if self.kind == "cli":
            return f"cli (user {self.who})"
        if self.kind == "comment":
            return f"Plane comment by {self.who}"
        return f"{self.kind} ({self.who})"


class Actions:
    def __init__(
        self, store: Store, outbox: PlaneWrites, jobs: Dispatcher, queues: QueueState
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.jobs = jobs  # sends the resumed stage's job; its broker requeues dead letters
        self.queues = queues

    # -- tasks ----------------------------------------------------------------------
    def retry(self, task: Task, origin: Origin) -> Result:
        """Resume a blocked task at the stage that failed; any other stage is refused."""
        after: list[Callable[[], object]] = []
        with self.store.issue_lock(task.plane_issue_id):
            now = self.store.get_task(task.id)
            if now is None:
                result = ignored("the task no longer exists")
            elif now.stage is not Stage.BLOCKED:
                result = ignored(f"nothing to retry: the task is in {now.stage.value}, not blocked")
            else:
                result = resume(self.store, self.jobs, self.outbox, now, str(origin), after)
        run_after(after)
        return self._trace("retry", task, origin, result)

    def cancel(self, task: Task, origin: Origin) -> Result:
        """Cancel a live task (its running job is stopped); a finished one is refused."""
        with self.store.issue_lock(task.plane_issue_id):
            now = self.store.get_task(task.id)
            if now is None:
                result = ignored("the task no longer exists")
            elif now.stage in FINISHED_STAGES:
                result = ignored(f"nothing to cancel: the task is already {now.stage.value}")
            else:
                decision = decide(task_view(now), CancelRequested(str(origin)), NO_POLICY)
                apply_decision(self.store, now.id, decision)
                result = Result(Handled.CANCELLED, stage=Stage.CANCELLED)
        if result.kind is Handled.CANCELLED:
            run_after([lambda: self.outbox.wake(task.id)])  # Plane shows Cancelled
        return self._trace("cancel", task, origin, result)

    def _trace(self, action: str, task: Task, origin: Origin, result: Result) -> Result:
        self.store.record(task.id, TimelineKind.ACTION, f"{action} by {origin}: {result}")
        self.store.record_action(action, task.work_item_id, str(origin), str(result))
        with logs.bind(task_id=task.id, work_item=task.work_item_id, project=task.project):
            log.info("%s by %s: %s", action, origin, result)
        return result

    # -- dead letters ---------------------------------------------------------------
    def requeue(self, message_id: str, origin: Origin) -> Result:
        """Send a dead-lettered message again, its retries cleared."""
        dead = self.queues.find_dead(message_id)
        if dead is None:
            result = ignored(f"no dead-lettered message {message_id!r}")
        else:
            new_id = self.queues.requeue(self.jobs.broker, dead)
            if new_id is None:
                result = ignored(f"message {message_id} is no longer dead-lettered")
            else:
                result = Result(Handled.MOVED, f"{dead.actor} {dead.args} requeued on {dead.queue}")
        self.store.record_action("requeue", message_id, str(origin), str(result))
        task = self._task_of(dead) if dead is not None else None
        if task is not None:
            self.store.record(
                task.id, TimelineKind.ACTION, f"requeue of {message_id} by {origin}: {result}"
            )
        log.info("requeue of %s by %s: %s", message_id, origin, result)
        return result

    def _task_of(self, dead: DeadLetter) -> Task | None:
        """The task a dead message was about, when its arguments say."""
        args = dead.arguments
        first = args[0] if args else None
        if dead.actor == RUN_JOB and isinstance(first, str):
            job = self.store.get_job(first)
            return self.store.get_task(job.task_id) if job else None
        if dead.actor == FLUSH_OUTBOX and isinstance(first, str):
            return self.store.get_task(first)
        if dead.actor == PROCESS_EVENT and isinstance(first, dict):
            issue = first.get("issue_id")
            return self.store.get_task_by_issue(issue) if isinstance(issue, str) else None
        return None
