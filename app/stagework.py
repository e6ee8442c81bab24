"""What each stage does. One function per stage; each returns a StageResult and never
decides the next stage itself (the stage machine does, in `app.jobs`).

Agent stages record the agent's result on the job the moment it exits, so a job
redelivered after a worker died continues from there instead of running the agent
again. Outbound calls (Plane comments, status) never raise; git and forge errors
surface as a failure with their reason.
"""

from __future__ import annotations

import html
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.agents import EXIT_REWORK, EXIT_TEMPORARY, ProcessResult, agent_env, run_process
from app.config import Settings
from app.domain.models import Job, Task, utcnow
from app.domain.stages import Outcome, Stage
from app.forge.base import Forge, PullRequest
from app.git import Repo
from app.plane.client import PlaneClient
from app.projects import AgentCommand, Project
from app.store import Store

log = logging.getLogger(__name__)

ROLE_OF_STAGE = {
    Stage.ANALYSIS: "analyst",
    Stage.DEVELOPMENT: "developer",
    Stage.REVIEW: "reviewer",
}


@dataclass
class StageResult:
    outcome: Outcome | None  # None: no transition (waiting for a human, CI, a slot)
    message: str
    retry: bool = False  # a failure worth another attempt (exit 75, agent failure)
    wait_s: float | None = None  # run this same job again after this delay
    fields: dict[str, Any] = field(default_factory=dict)  # task fields to set
    comment: str | None = None  # a Plane comment (HTML) for this milestone


@dataclass
class Context:
    settings: Settings
    store: Store
    plane: PlaneClient
    forge_for: Callable[[Project], Forge]
    should_stop: Callable[[], bool] = lambda: False

    def repo(self, project: Project) -> Repo:
        return Repo(self.settings.repos_dir, project.name, project.repo, project.default_branch)


def tail(text: str, limit: int = 3000) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


def pre(text: str) -> str:
    return f"<pre>{html.escape(tail(text))}</pre>"


class StageWork:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.store = ctx.store

    def run(self, task: Task, job: Job, project: Project) -> StageResult:
        handlers: dict[Stage, Callable[[Task, Job, Project], StageResult]] = {
            Stage.ANALYSIS: self.analysis,
            Stage.DEVELOPMENT: self.development,
            Stage.QUALITY_GATE: self.quality_gate,
            Stage.REVIEW: self.review,
            Stage.MERGE: self.merge,
            Stage.AWAITING_DEPLOY: self.awaiting_deploy,
            Stage.DEPLOYING: self.deploying,
            Stage.MONITORING: self.monitoring,
        }
        return handlers[task.stage](task, job, project)

    # -- agents -------------------------------------------------------------------------
    def analysis(self, task: Task, job: Job, project: Project) -> StageResult:
        return self._agent_stage(task, job, project, "analyst", "Analysis done")

    def development(self, task: Task, job: Job, project: Project) -> StageResult:
        result = self._agent_stage(task, job, project, "developer", "Development done")
        if result.outcome is Outcome.SUCCESS:
            result.fields["feedback"] = None  # consumed
        return result

    def _agent_stage(
        self, task: Task, job: Job, project: Project, role: str, milestone: str
    ) -> StageResult:
        command = project.agents.get(role)  # type: ignore[call-overload]
        if command is None:
            return StageResult(Outcome.SUCCESS, f"no {role} agent configured: stage skipped")
        repo = self.ctx.repo(project)
        worktree = repo.worktree(task.id, task.branch)
        repo.fetch()
        result = self.agent(task, job, project, role, command, worktree)
        if not result.ok:
            return self._agent_failure(role, result)
        committed = repo.commit_all(worktree, f"{task.work_item_id}: {task.stage.value}")
        repo.push(worktree, task.branch)
        note = " (uncommitted changes committed)" if committed else ""
        return StageResult(
            Outcome.SUCCESS,
            f"{role} succeeded, {result.describe()}{note}",
            comment=f"<p>{milestone} ({role}: {result.describe()}).</p>"
            f"{pre(result.output) if result.output.strip() else ''}",
        )

    def _agent_failure(self, role: str, result: ProcessResult) -> StageResult:
        if result.cancelled:
            return StageResult(None, f"{role} stopped: task cancelled")
        if result.exit_code == EXIT_TEMPORARY:
            return StageResult(Outcome.FAILURE, f"{role}: temporary failure (exit 75)", retry=True)
        return StageResult(
            Outcome.FAILURE,
            f"{role} failed: {result.describe()}: {tail(result.output, 500)}",
            retry=True,
        )

    def agent(
        self,
        task: Task,
        job: Job,
        project: Project,
        role: str,
        command: AgentCommand,
        worktree: Path,
    ) -> ProcessResult:
        """Run the role's agent once per job: a recorded result is returned, not re-run."""
        if job.agent_result:
            log.info("job %s: agent already finished before a restart; not run again", job.id)
            return ProcessResult(**json.loads(job.agent_result))
        self._kill_orphan(job)
        files = self.ctx.settings.repos_dir / "jobs" / job.id
        files.mkdir(parents=True, exist_ok=True)
        issue_file, feedback_file = files / "issue.md", files / "feedback.md"
        issue_file.write_text(self._issue_text(task, project), encoding="utf-8")
        feedback_file.write_text(task.feedback or "", encoding="utf-8")
        env = agent_env(
            os.environ,
            {
                "PF_TASK_ID": task.id,
                "PF_WORK_ITEM": task.work_item_id,
                "PF_STAGE": task.stage.value,
                "PF_BRANCH": task.branch,
                "PF_REPO_DIR": str(worktree),
                "PF_FEEDBACK_FILE": str(feedback_file),
                "PF_ISSUE_FILE": str(issue_file),
                "PF_ROLE": role,
            },
        )
        result = run_process(
            command.argv,
            cwd=worktree,
            env=env,
            timeout_s=command.time_limit_s,
            tail_bytes=self.ctx.settings.agent_output_tail_kib * 1024,
            should_stop=self.ctx.should_stop,
            on_start=lambda pid: self._record_pid(job, pid),
        )
        self.store.update_job(job.id, agent_result=json.dumps(result.__dict__))
        self.store.add_usage(task.id, agent_seconds=result.duration_s, tokens=result.tokens)
        self.store.record(task.id, "agent", f"{role} {result.describe()}", job_id=job.id)
        return result

    def _record_pid(self, job: Job, pid: int) -> None:
        self.store.update_job(job.id, agent_pgid=pid, agent_host=socket.gethostname())

    def _kill_orphan(self, job: Job) -> None:
        """A worker that died mid-run leaves its agent running: stop it before a new run."""
        if job.agent_pgid and job.agent_host == socket.gethostname():
            try:
                os.killpg(job.agent_pgid, signal.SIGKILL)
                log.warning("job %s: killed the orphaned agent of a dead worker", job.id)
            except (ProcessLookupError, PermissionError):
                pass

    def _issue_text(self, task: Task, project: Project) -> str:
        """The work item's text, as the trigger saw it (a Plane read only for tasks made
        before planeflow kept it): no job holds its slot waiting for Plane for it."""
        if task.description is not None:
            return f"# {task.work_item_id}: {task.title}\n\n{task.description}\n"
        description = ""
        try:
            item = self.ctx.plane.get_work_item(project.plane_project_id, task.plane_issue_id)
            description = item.description_stripped or item.description_html or ""
        except Exception as exc:
            log.warning("task %s: issue text unavailable: %s", task.id, exc)
        return f"# {task.work_item_id}: {task.title}\n\n{description}\n"

    # -- quality gates ------------------------------------------------------------------
    def quality_gate(self, task: Task, job: Job, project: Project) -> StageResult:
        repo = self.ctx.repo(project)
        worktree = repo.worktree(task.id, task.branch)
        head = repo.head(worktree)
        if not project.gates:
            return StageResult(
                Outcome.SUCCESS, "no quality gates configured", fields={"gates_passed_sha": head}
            )
        env = agent_env(
            os.environ,
            {
                "PF_TASK_ID": task.id,
                "PF_WORK_ITEM": task.work_item_id,
                "PF_BRANCH": task.branch,
                "PF_REPO_DIR": str(worktree),
            },
        )
        results: list[dict[str, Any]] = []
        for gate in project.gates:
            r = run_process(
                gate.argv,
                cwd=worktree,
                env=env,
                timeout_s=gate.timeout_s,
                should_stop=self.ctx.should_stop,
            )
            results.append(
                {
                    "name": gate.name,
                    "passed": r.ok,
                    "duration_s": round(r.duration_s, 2),
                    "detail": r.describe(),
                    "output_tail": tail(r.output, 2000),
                }
            )
        self.store.update_job(job.id, gates=json.dumps(results))
        rows = "".join(
            f"<li>{'✅' if g['passed'] else '❌'} {html.escape(g['name'])}: {g['detail']}</li>"
            for g in results
        )
        failed = [g for g in results if not g["passed"]]
        comment = f"<p>Quality gates on <code>{head[:10]}</code>:</p><ul>{rows}</ul>"
        if not failed:
            return StageResult(
                Outcome.SUCCESS,
                f"{len(results)} gate(s) passed",
                fields={"gates_passed_sha": head},
                comment=comment,
            )
        feedback = "\n\n".join(
            f"Quality gate '{g['name']}' failed ({g['detail']}):\n{g['output_tail']}"
            for g in failed
        )
        return StageResult(
            Outcome.REWORK,
            f"gate(s) failed: {', '.join(g['name'] for g in failed)}",
            fields={"feedback": feedback},
            comment=comment,
        )

    # -- review -------------------------------------------------------------------------
    def review(self, task: Task, job: Job, project: Project) -> StageResult:
        repo = self.ctx.repo(project)
        worktree = repo.worktree(task.id, task.branch)
        forge = self.ctx.forge_for(project)
        pr = forge.open_or_update(
            repo,
            task.branch,
            f"{task.work_item_id}: {task.title}",
            f"Work item {task.work_item_id}, by planeflow.",
        )
        fields: dict[str, Any] = {"pr_url": pr.url, "pr_number": pr.number}
        comment = (
            f'<p>Ready for review: <a href="{html.escape(pr.url)}">'
            f"{html.escape(pr.url)}</a>. Move the work item to <b>Approved</b> or "
            f"<b>Rejected</b> (comments are passed to the developer).</p>"
        )
        reviewer = project.agents.get("reviewer")
        if reviewer is not None:
            result = self.agent(task, job, project, "reviewer", reviewer, worktree)
            if result.exit_code == EXIT_REWORK:
                return StageResult(
                    Outcome.REWORK,
                    "reviewer agent asked for changes",
                    fields={**fields, "feedback": result.output},
                    comment=f"<p>Reviewer agent asked for changes:</p>{pre(result.output)}",
                )
            if not result.ok:
                return self._agent_failure("reviewer", result)
            comment += f"<p>Reviewer agent:</p>{pre(result.output)}"
        return StageResult(
            None,
            f"pull request {pr.url}; waiting for the human verdict",
            fields=fields,
            comment=comment,
        )

    # -- merge --------------------------------------------------------------------------
    def merge(self, task: Task, job: Job, project: Project) -> StageResult:
        repo = self.ctx.repo(project)
        repo.ensure_clone()
        forge = self.ctx.forge_for(project)
        pr = PullRequest(task.pr_url or "", task.branch, task.pr_number)
        check = forge.check(repo, pr)
        if check.merged:
            return StageResult(
                Outcome.SUCCESS,
                "merged on the forge by a human",
                fields={"merged_sha": check.head_sha},
                comment="<p>Merged (on the forge).</p>",
            )
        if check.closed:
            return StageResult(Outcome.FAILURE, "pull request closed without merge")
        if not check.mergeable:
            return StageResult(Outcome.FAILURE, f"not mergeable: {check.reason or 'conflict'}")
        if task.gates_passed_sha and check.head_sha and check.head_sha != task.gates_passed_sha:
            return StageResult(
                Outcome.FAILURE,
                f"quality gates did not run on the current head "
                f"{check.head_sha[:10]} (passed on {task.gates_passed_sha[:10]})",
            )
        if check.ci == "failure":
            return StageResult(Outcome.FAILURE, "forge CI failed on the pull request")
        if check.ci == "pending":
            since = task.merge_waiting_since or utcnow()
            waited = (utcnow() - since).total_seconds()
            if waited > project.merge_wait_s:
                return StageResult(Outcome.FAILURE, f"forge CI still pending after {waited:.0f}s")
            return StageResult(
                None, "waiting for forge CI", wait_s=30.0, fields={"merge_waiting_since": since}
            )
        merged = forge.merge(repo, pr, f"Merge {task.branch} ({task.work_item_id})")
        if not merged.ok:
            return StageResult(Outcome.FAILURE, f"merge failed: {merged.reason}")
        return StageResult(
            Outcome.SUCCESS,
            f"merged into {project.default_branch} as {merged.sha[:10]}",
            fields={"merged_sha": merged.sha},
            comment=f"<p>Merged into <code>{project.default_branch}</code> "
            f"(<code>{merged.sha[:10]}</code>).</p>",
        )

    # -- deploy -------------------------------------------------------------------------
    def awaiting_deploy(self, task: Task, job: Job, project: Project) -> StageResult:
        ttl = project.deploy_timeout_s + project.health_window_s + 3600
        holder = self.store.take_deploy_slot(project.repo, task.id, ttl)
        if holder is None:
            return StageResult(Outcome.SUCCESS, f"deploy slot of {project.repo} taken")
        return StageResult(
            None,
            f"waiting for the deploy slot of {project.repo} (task {holder} is deploying)",
            wait_s=self.ctx.settings.cap_wait_s,
        )

    def deploying(self, task: Task, job: Job, project: Project) -> StageResult:
        if project.deploy == "none":
            return StageResult(
                Outcome.SUCCESS,
                'deploy skipped (deploy = "none")',
                comment='<p>Deploy skipped (<code>deploy = "none"</code>).</p>',
            )
        if project.self_hosting and task.deploy_started_at is not None:
            # The deploy restarted planeflow itself; this is the new process resuming.
            return StageResult(
                Outcome.SUCCESS,
                "self-hosted deploy recorded before the restart; resuming with monitoring",
            )
        self.store.update_task(task.id, deploy_started_at=utcnow())  # before a restart
        repo = self.ctx.repo(project)
        checkout = repo.deploy_checkout()
        env = agent_env(
            os.environ,
            {
                "PF_TASK_ID": task.id,
                "PF_WORK_ITEM": task.work_item_id,
                "PF_REPO_DIR": str(checkout),
                "PF_MERGED_SHA": task.merged_sha or "",
            },
        )
        r = run_process(
            project.deploy,
            cwd=checkout,
            env=env,
            timeout_s=project.deploy_timeout_s,
            should_stop=self.ctx.should_stop,
        )
        if r.ok:
            return StageResult(
                Outcome.SUCCESS,
                f"deployed ({r.describe()})",
                comment=f"<p>Deployed ({r.describe()}).</p>",
            )
        return StageResult(Outcome.FAILURE, f"deploy failed: {r.describe()}: {tail(r.output, 500)}")

    def monitoring(self, task: Task, job: Job, project: Project) -> StageResult:
        if not project.health_url:
            return StageResult(Outcome.SUCCESS, "no health URL configured: nothing to watch")
        started = task.monitor_started_at or utcnow()
        if task.monitor_started_at is None:
            self.store.update_task(task.id, monitor_started_at=started)
        failures, checks, last_error = 0, 0, ""
        end = started.timestamp() + project.health_window_s
        with httpx.Client(timeout=5.0) as http:
            while True:
                if self.ctx.should_stop():
                    return StageResult(None, "monitoring stopped: task cancelled")
                checks += 1
                try:
                    resp = http.get(project.health_url)
                    healthy = 200 <= resp.status_code < 300
                    last_error = "" if healthy else f"HTTP {resp.status_code}"
                except httpx.HTTPError as exc:
                    healthy, last_error = False, f"{type(exc).__name__}: {exc}"
                if not healthy:
                    failures += 1
                    if failures >= project.health_failure_threshold:
                        return StageResult(
                            Outcome.FAILURE,
                            f"DEGRADED: {failures} failed health checks "
                            f"({last_error}); no automatic rollback",
                            comment=f"<p>⚠️ Post-deploy monitoring: DEGRADED — {failures} "
                            f"failed health checks of {html.escape(project.health_url)}"
                            f" ({html.escape(last_error)}). No automatic rollback."
                            "</p>",
                        )
                remaining = end - time.time()
                if remaining <= 0:
                    break
                time.sleep(min(project.health_interval_s, remaining))
        return StageResult(
            Outcome.SUCCESS,
            f"HEALTHY: {checks} check(s), {failures} failure(s)",
            comment=f"<p>Post-deploy monitoring: HEALTHY ({checks} checks over "
            f"{project.health_window_s:.0f}s).</p>",
        )
