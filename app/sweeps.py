"""Sweeps the reconciler runs every tick: lost and unstarted jobs, finished worktrees.

A running job whose heartbeat stopped past its time limit (+ a margin) is lost: it
runs again, up to `ORCH_JOB_MAX_ATTEMPTS`, then its task is aborted into `blocked`
through the decision path, under the work item's lock. A queued job not started for a
while has its message sent again. Worktrees of done and cancelled tasks are removed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from app.apply import EndedJob, apply_decision
from app.config import Settings
from app.domain.decisions import Aborted, Policy, decide, task_view
from app.domain.models import JobState, utcnow
from app.domain.results import TimelineKind
from app.domain.stages import FINISHED_STAGES, Stage
from app.git import Repo
from app.pipeline import JobSender, PlaneWrites, run_after
from app.projects import Registry
from app.store import Store

log = logging.getLogger(__name__)


class Sweeps:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        registry: Registry,
        outbox: PlaneWrites,
        jobs: JobSender,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.outbox = outbox
        self.jobs = jobs

    def sweep_jobs(self) -> int:
        """Lost running jobs are re-enqueued (then blocked); unstarted ones re-sent."""
        acted = 0
        now = utcnow()
        for job in self.store.active_jobs():
            try:
                if job.state is JobState.RUNNING:
                    last = job.heartbeat_at or job.started_at or job.created_at
                    limit = job.time_limit_s + self.settings.job_lost_margin_s
                    if (now - last).total_seconds() > limit:
                        self._lost(job.id)
                        acted += 1
                elif job.state is JobState.QUEUED:
                    last = job.enqueued_at or job.created_at
                    if (now - last).total_seconds() > self.settings.job_resend_after_s:
                        self.store.update_job(job.id, enqueued_at=now)
                        self.jobs.send_job(job.id)
                        self.store.record(
                            job.task_id,
                            TimelineKind.JOB,
                            f"job {job.id} not started: message sent again",
                        )
                        acted += 1
            except Exception as exc:
                log.warning("job sweep: job %s: %s", job.id, exc)
        return acted

    def sweep_worktrees(self) -> int:
        """Remove the git worktrees of finished (done or cancelled) tasks."""
        removed = 0
        for project in self.registry.projects.values():
            repo = Repo(self.settings.repos_dir, project.name, project.repo, project.default_branch)
            if not repo.worktrees.is_dir():
                continue
            for path in repo.worktrees.iterdir():
                task = self.store.get_task(path.name) if not path.name.startswith("_") else None
                if task is not None and task.stage in FINISHED_STAGES:
                    try:
                        repo.remove_worktree(task.id)
                        removed += 1
                    except Exception as exc:
                        log.warning("worktree sweep: %s: %s", path, exc)
        return removed

    def _lost(self, job_id: str) -> None:
        """A running job stopped beating: run it again, or abort the task into `blocked`
        past `job_max_attempts` — under the work item's lock, through the decision path."""
        job = self.store.get_job(job_id)
        task = self.store.get_task(job.task_id) if job is not None else None
        if job is None or task is None:
            return
        after: list[Callable[[], object]] = []
        with self.store.issue_lock(task.plane_issue_id):
            job, task = self.store.get_job(job_id), self.store.get_task(task.id)
            if job is None or task is None or not job.is_active:
                return  # finished or handled meanwhile
            self.store.incr_counter("jobs_lost")
            if task.stage in FINISHED_STAGES or task.stage is Stage.BLOCKED:
                self.store.finish_job(
                    job.id, "lost", state=JobState.LOST, error="heartbeat stopped"
                )
                return
            if job.attempt >= self.settings.job_max_attempts:
                reason = f"job for {job.stage.value} lost {job.attempt} time(s) (worker died)"
                decision = decide(task_view(task), Aborted(reason), Policy(max_rework=0))
                applied = apply_decision(
                    self.store,
                    task.id,
                    decision,
                    ended=EndedJob(job.id, "lost", JobState.LOST, "heartbeat stopped"),
                )
                after.append(lambda: self.outbox.wake(applied.task.id))
            else:
                self.store.finish_job(
                    job.id, "lost", state=JobState.LOST, error="heartbeat stopped"
                )
                new = self.store.create_job(
                    task.id, job.stage, attempt=job.attempt + 1, time_limit_s=job.time_limit_s
                )
                if new is not None:
                    self.store.record(
                        task.id,
                        TimelineKind.JOB,
                        f"job {job.id} lost (no heartbeat); retrying as job {new.id}",
                    )
                    after.append(lambda: self.jobs.send_job(new.id))
        run_after(after)
