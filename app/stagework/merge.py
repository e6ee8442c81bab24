"""The merge gate: mergeable, gates passed on the current head, forge CI green."""

from __future__ import annotations

import logging

from app.domain.models import Job, Task, utcnow
from app.domain.stages import Outcome
from app.forge.base import PullRequest
from app.projects import Project
from app.stagework.common import Context, StageResult

log = logging.getLogger(__name__)


def merge(ctx: Context, task: Task, job: Job, project: Project) -> StageResult:
    repo = ctx.repo(project)
    repo.ensure_clone()
    forge = ctx.forge_for(project)
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
