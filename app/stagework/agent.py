"""Agent stages (analysis, development) and running an agent once per job.

The agent's result is recorded on the job the moment it exits, so a job redelivered
after a worker died continues from there instead of running the agent again; an
orphaned agent of a dead worker is killed before a new run.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
from pathlib import Path

from app.agents import EXIT_TEMPORARY, ProcessResult, agent_env, give_to, run_process
from app.domain.models import Job, Task
from app.domain.results import TimelineKind
from app.domain.stages import Outcome
from app.projects import AgentCommand, Project
from app.stagework.common import Context, StageResult, pre, tail

log = logging.getLogger(__name__)


def analysis(ctx: Context, task: Task, job: Job, project: Project) -> StageResult:
    return _agent_stage(ctx, task, job, project, "analyst", "Analysis done")


def development(ctx: Context, task: Task, job: Job, project: Project) -> StageResult:
    result = _agent_stage(ctx, task, job, project, "developer", "Development done")
    if result.outcome is Outcome.SUCCESS:
        result.fields["feedback"] = None  # consumed
    return result


def _agent_stage(
    ctx: Context, task: Task, job: Job, project: Project, role: str, milestone: str
) -> StageResult:
    command = project.agents.get(role)  # type: ignore[call-overload]
    if command is None:
        return StageResult(Outcome.SUCCESS, f"no {role} agent configured: stage skipped")
    repo = ctx.repo(project)
    worktree = repo.worktree(task.id, task.branch)
    repo.fetch()
    result = run_agent(ctx, task, job, project, role, command, worktree)
    if not result.ok:
        return agent_failure(role, result)
    committed = repo.commit_all(worktree, f"{task.work_item_id}: {task.stage.value}")
    repo.push(worktree, task.branch)
    note = " (uncommitted changes committed)" if committed else ""
    return StageResult(
        Outcome.SUCCESS,
        f"{role} succeeded, {result.describe()}{note}",
        comment=f"<p>{milestone} ({role}: {result.describe()}).</p>"
        f"{pre(result.output) if result.output.strip() else ''}",
    )


def agent_failure(role: str, result: ProcessResult) -> StageResult:
    if result.cancelled:
        return StageResult(None, f"{role} stopped: task cancelled")
    if result.exit_code == EXIT_TEMPORARY:
        return StageResult(Outcome.FAILURE, f"{role}: temporary failure (exit 75)", retry=True)
    return StageResult(
        Outcome.FAILURE,
        f"{role} failed: {result.describe()}: {tail(result.output, 500)}",
        retry=True,
    )


def run_agent(
    ctx: Context,
    task: Task,
    job: Job,
    project: Project,
    role: str,
    command: AgentCommand,
    worktree: Path,
    *,
    feedback: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> ProcessResult:
    """Run the role's agent once per job: a recorded result is returned, not re-run.

    `feedback` replaces the task's own (a merge conflict to resolve); `extra_env` adds
    to the PF_* variables."""
    if job.agent_result:
        log.info("job %s: agent already finished before a restart; not run again", job.id)
        return ProcessResult(**json.loads(job.agent_result))
    _kill_orphan(job)
    files = ctx.settings.repos_dir / "jobs" / job.id
    files.mkdir(parents=True, exist_ok=True)
    issue_file, feedback_file = files / "issue.md", files / "feedback.md"
    issue_file.write_text(_issue_text(ctx, task, project), encoding="utf-8")
    feedback_file.write_text(
        feedback if feedback is not None else task.feedback or "", encoding="utf-8"
    )
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
            **(extra_env or {}),
        },
        fixed=command.env,
        pass_env=command.pass_env,
    )
    if ctx.settings.agent_user:
        give_to(ctx.settings.agent_user, files)  # the issue and feedback files
    result = run_process(
        command.argv,
        cwd=worktree,
        env=env,
        timeout_s=command.time_limit_s,
        tail_bytes=ctx.settings.agent_output_tail_kib * 1024,
        should_stop=ctx.should_stop,
        on_start=lambda pid: _record_pid(ctx, job, pid),
        user=ctx.settings.agent_user,
    )
    ctx.store.update_job(job.id, agent_result=json.dumps(result.__dict__))
    ctx.store.add_usage(task.id, agent_seconds=result.duration_s, tokens=result.tokens)
    ctx.store.record(task.id, TimelineKind.AGENT, f"{role} {result.describe()}", job_id=job.id)
    return result


def _record_pid(ctx: Context, job: Job, pid: int) -> None:
    ctx.store.update_job(job.id, agent_pgid=pid, agent_host=socket.gethostname())


def _kill_orphan(job: Job) -> None:
    """A worker that died mid-run leaves its agent running: stop it before a new run."""
    if job.agent_pgid and job.agent_host == socket.gethostname():
        try:
            os.killpg(job.agent_pgid, signal.SIGKILL)
            log.warning("job %s: killed the orphaned agent of a dead worker", job.id)
        except (ProcessLookupError, PermissionError):
            pass


def _issue_text(ctx: Context, task: Task, project: Project) -> str:
    """The work item's text, as the trigger saw it (a Plane read only for tasks made
    before planeflow kept it): no job holds its slot waiting for Plane for it."""
    if task.description is not None:
        return f"# {task.work_item_id}: {task.title}\n\n{task.description}\n"
    description = ""
    try:
        item = ctx.plane.get_work_item(project.plane_project_id, task.plane_issue_id)
        description = item.description_stripped or item.description_html or ""
    except Exception as exc:
        log.warning("task %s: issue text unavailable: %s", task.id, exc)
    return f"# {task.work_item_id}: {task.title}\n\n{description}\n"
