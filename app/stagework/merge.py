"""The merge queue: one card at a time per repository merges, conflicts resolved in place.

The card first takes the repository's merge slot (`pf:lock:merge:<repo>`; the others
wait for it). Holding it: mergeable, gates passed on the current head, forge CI green,
then the merge. When the branch conflicts with the default branch, the developer agent
resolves it inside the slot — the default branch merged into the task's worktree, the
conflicting files and the conflict as its feedback — the gates run again on the new
head, and the merge proceeds; so no other card merges in between and each card
resolves at most once per merge. The human's approval stands unless the project sets
`reapprove_after_conflict`; resolutions count apart from `max_rework`
(`max_conflict_rework`), and one that fails blocks the task with the reason. The slot is
freed when the task leaves `merge`, whichever way (`app.apply`).
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from typing import Any

from app.domain.models import Job, Task, utcnow
from app.domain.stages import Outcome
from app.forge.base import MergeCheck, PullRequest
from app.git import Repo
from app.git_update import Conflict, abort_update, finish_resolution, push_branch, update_branch
from app.projects import Project
from app.stagework.agent import run_agent
from app.stagework.common import Context, StageResult
from app.stagework.gates import quality_gate

log = logging.getLogger(__name__)
SLOT_WAIT_S = 3.0  # a card waiting for the merge slot looks again this often


@dataclass
class Resolved:
    fields: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def slot_ttl_s(project: Project) -> float:
    """Long enough for CI, a conflict resolution and the gates."""
    developer = project.agents.get("developer")
    agent_s = developer.time_limit_s if developer is not None else 0
    return project.merge_wait_s + agent_s + sum(g.timeout_s for g in project.gates) + 600


def merge(ctx: Context, task: Task, job: Job, project: Project) -> StageResult:
    holder = ctx.store.take_merge_slot(project.repo, task.id, slot_ttl_s(project))
    if holder is not None:
        return StageResult(
            None, f"waiting for the merge slot (task {holder} is merging)", wait_s=SLOT_WAIT_S
        )
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
    resolved = Resolved()
    if not check.mergeable:
        outcome = resolve_conflict(ctx, task, job, project, repo)
        if isinstance(outcome, StageResult):
            return outcome
        resolved = outcome
        task = task.model_copy(update=resolved.fields)
        check = forge.check(repo, pr)
        if not check.mergeable:
            reason = check.reason or "conflict"
            return StageResult(Outcome.FAILURE, f"not mergeable after the resolution: {reason}")
    return _merge_checked(ctx, task, project, repo, pr, check, resolved)


def _merge_checked(
    ctx: Context,
    task: Task,
    project: Project,
    repo: Repo,
    pr: PullRequest,
    check: MergeCheck,
    resolved: Resolved,
) -> StageResult:
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
        fields = {**resolved.fields, "merge_waiting_since": since}
        return StageResult(
            None, "waiting for forge CI", wait_s=30.0, fields=fields, comment=resolved.note or None
        )
    merged = ctx.forge_for(project).merge(repo, pr, f"Merge {task.branch} ({task.work_item_id})")
    if not merged.ok:
        return StageResult(Outcome.FAILURE, f"merge failed: {merged.reason}")
    return StageResult(
        Outcome.SUCCESS,
        f"merged into {project.default_branch} as {merged.sha[:10]}",
        fields={**resolved.fields, "merged_sha": merged.sha},
        comment=f"{resolved.note}<p>Merged into <code>{project.default_branch}</code> "
        f"(<code>{merged.sha[:10]}</code>).</p>",
    )


def resolve_conflict(
    ctx: Context, task: Task, job: Job, project: Project, repo: Repo
) -> StageResult | Resolved:
    """Bring the branch up to date with the default branch, the developer agent resolving
    a conflict; then the gates on the new head. A StageResult when the merge stops here."""
    worktree = repo.worktree(task.id, task.branch)
    conflict = update_branch(repo, worktree)
    default = project.default_branch
    if conflict is not None:
        stop = _agent_resolves(ctx, task, job, project, repo, conflict)
        if stop is not None:
            abort_update(worktree)
            return stop
        what = ", ".join(html.escape(f) for f in conflict.files)
        note = (
            f"<p>Merge conflict with <code>{default}</code> in <code>{what}</code> "
            f"resolved by the developer agent.</p>"
        )
        count = task.conflict_rework_count + 1
    else:
        note, count = f"<p>Branch brought up to date with <code>{default}</code>.</p>", None
    push_branch(repo, worktree, task.branch)
    gates = quality_gate(ctx, task, job, project)
    fields: dict[str, Any] = dict(gates.fields)
    if count is not None:
        fields["conflict_rework_count"] = count
    note += gates.comment or ""
    if gates.outcome is not Outcome.SUCCESS:
        return StageResult(
            Outcome.REWORK,
            f"after the update from {default}: {gates.message}",
            fields=fields,
            comment=note,
        )
    if count is not None and project.reapprove_after_conflict:
        return StageResult(
            Outcome.REAPPROVE,
            "conflict resolved; the project asks for a new approval",
            fields=fields,
            comment=note,
        )
    return Resolved(fields, note)


def _agent_resolves(
    ctx: Context, task: Task, job: Job, project: Project, repo: Repo, conflict: Conflict
) -> StageResult | None:
    """Have the developer agent resolve `conflict` and commit it; None when it did."""
    files = ", ".join(conflict.files)
    where = f"merge conflict with {project.default_branch} in {files}"
    if task.conflict_rework_count >= project.max_conflict_rework:
        return StageResult(
            Outcome.FAILURE,
            f"{where}: max_conflict_rework ({project.max_conflict_rework}) reached",
        )
    command = project.agents.get("developer")
    if command is None:
        return StageResult(Outcome.FAILURE, f"{where}: no developer agent to resolve it")
    worktree = repo.worktree(task.id, task.branch)
    result = run_agent(
        ctx,
        task,
        job,
        project,
        "developer",
        command,
        worktree,
        feedback=conflict.feedback(project.default_branch),
        extra_env={"PF_MERGE_CONFLICT": "\n".join(conflict.files)},
    )
    if not result.ok:
        failed = result.describe()
        return StageResult(Outcome.FAILURE, f"{where}: the developer agent failed ({failed})")
    problem = finish_resolution(
        repo, worktree, f"{task.work_item_id}: merge {project.default_branch}, conflicts resolved"
    )
    if problem is not None:
        return StageResult(Outcome.FAILURE, f"{where}: not resolved ({problem})")
    return None
