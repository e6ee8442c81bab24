"""Deploy: the repo's deploy slot, then the project's deploy command (or none)."""

from __future__ import annotations

import logging
import os

from app.agents import agent_env, run_process
from app.domain.models import Job, Task, utcnow
from app.domain.stages import Outcome
from app.projects import Project
from app.stagework.common import Context, StageResult, tail

log = logging.getLogger(__name__)


def awaiting_deploy(ctx: Context, task: Task, job: Job, project: Project) -> StageResult:
    ttl = project.deploy_timeout_s + project.health_window_s + 3600
    holder = ctx.store.take_deploy_slot(project.repo, task.id, ttl)
    if holder is None:
        return StageResult(Outcome.SUCCESS, f"deploy slot of {project.repo} taken")
    return StageResult(
        None,
        f"waiting for the deploy slot of {project.repo} (task {holder} is deploying)",
        wait_s=ctx.settings.cap_wait_s,
    )


def deploying(ctx: Context, task: Task, job: Job, project: Project) -> StageResult:
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
    ctx.store.update_task(task.id, deploy_started_at=utcnow())  # before a restart
    repo = ctx.repo(project)
    checkout = repo.deploy_checkout()
    env = agent_env(
        os.environ,
        {
            "PF_TASK_ID": task.id,
            "PF_WORK_ITEM": task.work_item_id,
            "PF_REPO_DIR": str(checkout),
            "PF_MERGED_SHA": task.merged_sha or "",
        },
        pass_env=project.deploy_pass_env,
    )
    r = run_process(
        project.deploy,
        cwd=checkout,
        env=env,
        timeout_s=project.deploy_timeout_s,
        should_stop=ctx.should_stop,
        user=ctx.settings.agent_user,
    )
    if r.ok:
        return StageResult(
            Outcome.SUCCESS,
            f"deployed ({r.describe()})",
            comment=f"<p>Deployed ({r.describe()}).</p>",
        )
    return StageResult(Outcome.FAILURE, f"deploy failed: {r.describe()}: {tail(r.output, 500)}")
