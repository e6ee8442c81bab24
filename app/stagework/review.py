"""Review: open or update the pull request; the optional reviewer agent; then the
human verdict is awaited.
"""

from __future__ import annotations

import html
import logging
from typing import Any

from app.agents import EXIT_REWORK
from app.domain.models import Job, Task
from app.domain.stages import Outcome
from app.projects import Project
from app.stagework.agent import agent_failure, run_agent
from app.stagework.common import Context, StageResult, pre

log = logging.getLogger(__name__)


def review(ctx: Context, task: Task, job: Job, project: Project) -> StageResult:
    repo = ctx.repo(project)
    worktree = repo.worktree(task.id, task.branch)
    forge = ctx.forge_for(project)
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
        result = run_agent(ctx, task, job, project, "reviewer", reviewer, worktree)
        if result.exit_code == EXIT_REWORK:
            return StageResult(
                Outcome.REWORK,
                "reviewer agent asked for changes",
                fields={**fields, "feedback": result.output},
                comment=f"<p>Reviewer agent asked for changes:</p>{pre(result.output)}",
            )
        if not result.ok:
            return agent_failure("reviewer", result)
        comment += f"<p>Reviewer agent:</p>{pre(result.output)}"
    return StageResult(
        None,
        f"pull request {pr.url}; waiting for the human verdict",
        fields=fields,
        comment=comment,
        post=True,  # one comment: this, then the analysis, development and gate notes
    )
