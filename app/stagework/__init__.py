"""What each stage does. One function per stage (a module per concept); each returns a
StageResult and never decides the next stage itself (`app.domain.decisions` does).

Agent stages record the agent's result on the job the moment it exits, so a job
redelivered after a worker died continues from there instead of running the agent
again. Git and forge errors surface as a failure with their reason; nothing here
talks to Plane but the read of an old task's issue text.
"""

from __future__ import annotations

from collections.abc import Callable

from app.domain.models import Job, Task
from app.domain.stages import Stage
from app.projects import Project
from app.stagework.agent import analysis, development
from app.stagework.common import ROLE_OF_STAGE, Context, StageResult
from app.stagework.deploy import awaiting_deploy, deploying
from app.stagework.gates import quality_gate
from app.stagework.merge import merge
from app.stagework.monitoring import monitoring
from app.stagework.review import review

__all__ = ["ROLE_OF_STAGE", "Context", "StageResult", "StageWork"]

StageFn = Callable[[Context, Task, Job, Project], StageResult]
STAGE_WORK: dict[Stage, StageFn] = {
    Stage.ANALYSIS: analysis,
    Stage.DEVELOPMENT: development,
    Stage.QUALITY_GATE: quality_gate,
    Stage.REVIEW: review,
    Stage.MERGE: merge,
    Stage.AWAITING_DEPLOY: awaiting_deploy,
    Stage.DEPLOYING: deploying,
    Stage.MONITORING: monitoring,
}


class StageWork:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def run(self, task: Task, job: Job, project: Project) -> StageResult:
        return STAGE_WORK[task.stage](self.ctx, task, job, project)
