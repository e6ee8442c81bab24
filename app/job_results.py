"""After a job's stage work: its result becomes a decision, applied in one step.

A result with an outcome goes through `decide` (`app.domain.decisions`) and
`apply_decision` (one transaction under the work item's lock); a failure worth another
attempt queues the same stage again with backoff; a result without an outcome waits
(for a slot, CI, a human). The sends (next job, outbox wake-up, the verdict re-check)
run once the lock and the job's slot are released.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from app.apply import Applied, EndedJob, apply_decision
from app.caps import Caps
from app.config import Settings
from app.domain.decisions import Aborted, Policy, StageEnded, decide, task_view
from app.domain.models import Job, JobState, Task, utcnow
from app.domain.results import Handled, Result, TimelineKind, ignored
from app.domain.stages import TERMINAL_STAGES, Outcome, Stage
from app.forge.base import Forge
from app.pipeline import JobSender, PlaneWrites, run_after
from app.plane.client import PlaneClient
from app.projects import Project, Registry
from app.stagework import ROLE_OF_STAGE, Context, StageResult
from app.store import Store

log = logging.getLogger(__name__)
# The closing comment's lead; the merge, deploy and monitoring notes follow it.
DONE_LEAD = "<p>✅ Done.</p>"


@dataclass
class StageEnd:
    settings: Settings
    store: Store
    registry: Registry
    plane: PlaneClient
    outbox: PlaneWrites
    jobs: JobSender
    caps: Caps
    forge_for: Callable[[Project], Forge]
    heartbeat_s: float = 5.0
    # Called when a task starts waiting for the human verdict: a verdict given while the
    # review job ran was ignored then (job active), so the current state is read again.
    on_review_wait: Callable[[Task, Project], object] | None = None

    def _time_limit(self, stage: Stage, project: Project) -> float:
        role = ROLE_OF_STAGE.get(stage)
        command = project.agents.get(role) if role else None  # type: ignore[call-overload]
        if command is not None:
            return float(command.time_limit_s)
        if stage is Stage.QUALITY_GATE:
            return sum(g.timeout_s for g in project.gates) or 600.0
        if stage is Stage.DEPLOYING:
            return project.deploy_timeout_s
        if stage is Stage.MONITORING:
            return project.health_window_s + 60
        if stage is Stage.MERGE:  # may resolve a conflict and run the gates again
            developer = project.agents.get("developer")
            agent_s = developer.time_limit_s if developer is not None else 0
            return agent_s + sum(g.timeout_s for g in project.gates) + 600.0
        return 600.0

    # -- after the stage work -----------------------------------------------------------
    def _apply(
        self,
        task: Task,
        job: Job,
        project: Project,
        result: StageResult,
        after: list[Callable[[], object]],
    ) -> Result:
        """Record the result under the work item's lock; Plane's part goes to the outbox.

        The lock serialises this with the handlers (a cancel or a verdict arriving while
        the job ran), and the task is re-read inside it, so a cancelled task is never
        moved on by a job that was still running. `after` (queue sends, the verdict
        re-check) runs once the lock and the job's slot are released.
        """
        with self.store.issue_lock(task.plane_issue_id):
            fresh = self.store.get_task(task.id)
            current = self.store.get_job(job.id)
            if (
                fresh is None
                or fresh.stage is Stage.CANCELLED
                or current is None
                or not current.is_active
                or fresh.active_job_id != job.id
            ):
                if current is not None and current.is_active:
                    self.store.finish_job(job.id, "cancelled", state=JobState.CANCELLED)
                self.release_deploy_slot(project, task.id)
                return Result(Handled.STOPPED, "task cancelled or job superseded while running")
            return self._decide(fresh, job, project, result, after)

    def _decide(
        self,
        task: Task,
        job: Job,
        project: Project,
        result: StageResult,
        after: list[Callable[[], object]],
    ) -> Result:
        if result.post:
            self.outbox.post_notes(task.id, result.comment or "")
        elif result.comment:
            self.outbox.note(task.id, result.comment)
        if result.outcome is None:
            if result.fields:
                self.store.update_task(task.id, **result.fields)
            if result.wait_s is not None:
                self._wait(task, job, result.message, result.wait_s, after)
                return Result(Handled.WAITING, result.message)
            self.store.finish_job(job.id, "waiting")
            self.store.record(task.id, TimelineKind.STAGE, result.message)
            if task.stage is Stage.REVIEW and task.verdict_early and self.on_review_wait:
                # a verdict came while the job ran: read Plane now (else the webhook will)
                self.store.update_task(task.id, touch=False, verdict_early=False)
                recheck = self.on_review_wait
                after.append(lambda: recheck(task, project))
            return Result(Handled.WAITING, result.message, task.stage)
        message = result.message
        if result.retry and result.outcome is Outcome.FAILURE:
            if self._retry(task, job, project, message, after):
                return Result(Handled.RETRYING, message)
            message = f"{message} (after {job.attempt} attempt(s))"
        return self._transition(task, job, project, result.outcome, result.fields, message, after)

    def _retry(
        self,
        task: Task,
        job: Job,
        project: Project,
        message: str,
        after: list[Callable[[], object]],
    ) -> bool:
        role = ROLE_OF_STAGE.get(task.stage)
        command = project.agents.get(role) if role else None  # type: ignore[call-overload]
        max_attempts = command.max_attempts if command is not None else 3
        if job.attempt >= max_attempts:
            return False
        self.store.finish_job(job.id, "retry", error=message[:2000])
        new = self.store.create_job(task.id, task.stage, attempt=job.attempt + 1)
        if new is None:
            return True
        delay = self.settings.job_retry_base_s * (2 ** (job.attempt - 1))
        self.store.record(
            task.id,
            TimelineKind.RETRY,
            f"attempt {job.attempt}/{max_attempts} failed: {message[:500]}; retrying in {delay:g}s",
        )
        after.append(lambda: self.jobs.send_job(new.id, delay_ms=int(delay * 1000)))
        return True

    def _transition(
        self,
        task: Task,
        job: Job,
        project: Project,
        outcome: Outcome,
        result_fields: dict[str, object],
        message: str,
        after: list[Callable[[], object]],
    ) -> Result:
        """decide -> apply -> effects: one decision, one transaction, sends after."""
        decision = decide(
            task_view(task),
            StageEnded(outcome, message, result_fields),
            Policy(project.max_rework),
        )
        if decision.stage is Stage.DONE:
            self.outbox.post_notes(task.id, DONE_LEAD)  # the closing comment
        elif decision.blocked:
            self.outbox.post_notes(task.id)  # what was done before it stopped
        applied = apply_decision(
            self.store,
            task.id,
            decision,
            ended=EndedJob(job.id, outcome.value),
            time_limit_s=self._time_limit(decision.stage, project),
        )
        self._effects(applied, project, after)
        kind = Handled.BLOCKED if decision.blocked else Handled.MOVED
        return Result(kind, f"{task.stage.value} -> {decision.stage.value}", decision.stage)

    def _effects(
        self, applied: Applied, project: Project, after: list[Callable[[], object]]
    ) -> None:
        """The sends of an applied decision, for after the lock (and the slot)."""
        task, new = applied.task, applied.job
        if new is not None:
            after.append(lambda: self.jobs.send_job(new.id))
        after.append(lambda: self.outbox.wake(task.id))
        if applied.decision.effects.cleanup_worktree:
            after.append(lambda: self._cleanup(project, task))

    def _wait(
        self,
        task: Task,
        job: Job,
        reason: str,
        delay_s: float,
        after: list[Callable[[], object]] | None = None,
    ) -> None:
        if job.error != reason:  # say it once on the timeline, not at every look
            self.store.record(task.id, TimelineKind.WAITING, reason)
        self.store.update_job(job.id, state=JobState.QUEUED, error=reason, enqueued_at=utcnow())

        def send() -> str:
            return self.jobs.send_job(job.id, delay_ms=int(delay_s * 1000))

        if after is None:
            send()
        else:
            after.append(send)

    def _block(self, task: Task, job: Job, reason: str) -> Result:
        """The job cannot run (budget used up, project gone): abort into `blocked`."""
        after: list[Callable[[], object]] = []
        with self.store.issue_lock(task.plane_issue_id):
            fresh = self.store.get_task(task.id)
            if fresh is None or fresh.stage in TERMINAL_STAGES:
                return ignored("task already ended")
            decision = decide(task_view(fresh), Aborted(reason), Policy(max_rework=0))
            self.outbox.post_notes(task.id)
            applied = apply_decision(
                self.store, task.id, decision, ended=EndedJob(job.id, "blocked", error=reason)
            )
            project = self.registry.get(task.project)
            if project is not None:
                self._effects(applied, project, after)
            else:
                after.append(lambda: self.outbox.wake(task.id))
        run_after(after)
        return Result(Handled.BLOCKED, reason, Stage.BLOCKED)

    def release_deploy_slot(self, project: Project, task_id: str) -> None:
        self.store.release_deploy_slot(project.repo, task_id)

    def _cleanup(self, project: Project, task: Task) -> None:
        try:
            Context(self.settings, self.store, self.plane, self.forge_for).repo(
                project
            ).remove_worktree(task.id)
        except Exception as exc:
            log.warning("task %s: worktree cleanup failed: %s", task.id, exc)
