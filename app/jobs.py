"""Running one job: the life cycle around the stage work, and the transition after it.

`JobRunner.run(job_id)` is what the `run_job` actor calls. A job that already has an
outcome is never run again (Dramatiq delivers at least once); a job for a cancelled
task is not started, and a running one is stopped when the task is cancelled. The
runner takes a concurrency slot, beats a heartbeat, lets `StageWork` do the stage,
then asks the stage machine for the next stage and queues that stage's job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from app import logs
from app.caps import Slot, budget_exhausted
from app.domain.errors import PlaneflowError
from app.domain.models import Job, JobState, Task, utcnow
from app.domain.results import Handled, Result, TimelineKind, ignored
from app.domain.stages import Outcome, Stage
from app.job_results import StageEnd
from app.projects import Project
from app.stagework import Context, StageResult, StageWork

log = logging.getLogger(__name__)


@dataclass
class JobRunner(StageEnd):
    """Runs one job: its life cycle; `StageEnd` applies what the stage work returned."""

    def run(self, job_id: str) -> Result:
        job = self.store.get_job(job_id)
        if job is None:
            return ignored("no such job")
        if not job.is_active:
            return ignored(f"job {job.id} already {job.state.value} ({job.outcome})")
        task = self.store.get_task(job.task_id)
        if task is None:
            self.store.finish_job(job.id, "orphan", state=JobState.CANCELLED)
            return ignored("task gone")
        with logs.bind(
            task_id=task.id,
            work_item=task.work_item_id,
            stage=task.stage.value,
            project=task.project,
        ):
            return self._run(task, job)

    def _run(self, task: Task, job: Job) -> Result:
        if task.stage is Stage.CANCELLED:
            self.store.finish_job(job.id, "cancelled", state=JobState.CANCELLED)
            return Result(Handled.STOPPED, "not started: task cancelled")
        if task.active_job_id != job.id or task.stage is not job.stage:
            self.store.finish_job(job.id, "superseded", state=JobState.CANCELLED)
            self.store.record(task.id, TimelineKind.JOB, f"job {job.id} superseded; not run")
            return Result(Handled.STOPPED, "superseded")
        project = self.registry.get(task.project)
        if project is None:
            return self._block(task, job, f"project {task.project!r} is not in the registry")
        exhausted = budget_exhausted(task, project)
        if exhausted:
            return self._block(task, job, exhausted)
        slot, full = self.caps.take(job.id, project)
        if slot is None:
            self._wait(task, job, f"waiting for a slot: {full}", self.settings.cap_wait_s)
            return Result(Handled.WAITING, "for a slot")
        after: list[Callable[[], object]] = []
        try:
            decision = self._run_in_slot(task, job, project, slot, after)
        finally:
            self.caps.release(slot)
        # The slot is free before anything else talks to the queue or to Plane.
        for action in after:
            try:
                action()
            except Exception as exc:  # outbound calls never crash the pipeline
                log.warning("task %s: follow-up after %s failed: %s", task.id, decision, exc)
        return decision

    def _run_in_slot(
        self,
        task: Task,
        job: Job,
        project: Project,
        slot: Slot,
        after: list[Callable[[], object]],
    ) -> Result:
        now = utcnow()
        job = self.store.update_job(
            job.id,
            state=JobState.RUNNING,
            heartbeat_at=now,
            started_at=job.started_at or now,
            time_limit_s=self._time_limit(task.stage, project),
        )
        stop = threading.Event()
        beat = threading.Thread(
            target=self._beat,
            args=(task.id, job.id, slot, stop),
            daemon=True,
            name=f"heartbeat-{job.id}",
        )
        beat.start()
        ctx = Context(
            self.settings,
            self.store,
            self.plane,
            self.forge_for,
            should_stop=lambda: stop.is_set() and self._cancelled(task.id, job.id),
        )
        began = time.monotonic()
        try:
            result = StageWork(ctx).run(task, job, project)
        except Exception as exc:
            if isinstance(exc, PlaneflowError):  # a known failure (git, a forge): one line
                log.warning("stage %s of task %s failed: %s", task.stage.value, task.id, exc)
            else:
                log.exception("stage %s of task %s failed", task.stage.value, task.id)
            result = StageResult(
                Outcome.FAILURE,
                f"{task.stage.value} failed: {type(exc).__name__}: {exc}",
                retry=True,
            )
        finally:
            stop.set()
            beat.join(timeout=10)
        try:
            self.store.observe("job_duration_seconds", task.stage.value, time.monotonic() - began)
        except Exception as exc:  # a metric never fails a job
            log.warning("job %s: duration not recorded: %s", job.id, exc)
        return self._apply(task, job, project, result, after)

    def _beat(self, task_id: str, job_id: str, slot: Slot, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_s):
            try:
                self.store.update_job(job_id, heartbeat_at=utcnow())
                self.caps.beat(slot)
                if self._cancelled(task_id, job_id):
                    stop.set()  # the agent is killed by run_process's should_stop
            except Exception as exc:
                log.warning("heartbeat of job %s failed: %s", job_id, exc)

    def _cancelled(self, task_id: str, job_id: str) -> bool:
        task = self.store.get_task(task_id)
        job = self.store.get_job(job_id)
        return (
            task is None
            or task.stage is Stage.CANCELLED
            or (job is not None and job.state is JobState.CANCELLED)
        )

    # -- forge events -------------------------------------------------------------------
    def reevaluate_merge(self, project_name: str, branches: list[str]) -> int:
        """A forge event (CI status, PR merged/closed): look at waiting merges now."""
        count = 0
        for task in self.store.list_tasks(Stage.MERGE):
            if task.project != project_name or (branches and task.branch not in branches):
                continue
            job = self.store.active_job(task)
            if job is not None and job.state is JobState.QUEUED:
                self.store.record(
                    task.id, TimelineKind.FORGE, "forge event: merge re-evaluated now"
                )
                self.jobs.send_job(job.id)
                count += 1
        return count
