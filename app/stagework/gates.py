"""The quality gates: each gate command in the worktree; all must pass on the head."""

from __future__ import annotations

import html
import json
import logging
import os
from typing import Any

from app.agents import agent_env, run_process
from app.domain.models import Job, Task
from app.domain.stages import Outcome
from app.projects import Project
from app.stagework.common import Context, StageResult, tail

log = logging.getLogger(__name__)


def quality_gate(ctx: Context, task: Task, job: Job, project: Project) -> StageResult:
    repo = ctx.repo(project)
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
            env={**env, **gate.env},
            timeout_s=gate.timeout_s,
            should_stop=ctx.should_stop,
            user=ctx.settings.agent_user,
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
    ctx.store.update_job(job.id, gates=json.dumps(results))
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
        f"Quality gate '{g['name']}' failed ({g['detail']}):\n{g['output_tail']}" for g in failed
    )
    return StageResult(
        Outcome.REWORK,
        f"gate(s) failed: {', '.join(g['name'] for g in failed)}",
        fields={"feedback": feedback},
        comment=comment,
    )
