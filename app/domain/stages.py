"""The stage machine (Layer A, control): the only authority on a task's next stage.

`STAGE_TRANSITIONS` is a plain dict: for each stage, the outcomes it accepts and the
stage each outcome leads to. `next_stage` applies it, adding the two rules a plain
table cannot hold: rework loops are capped by `max_rework`, and a `blocked` task
resumes at the stage that failed. Plane statuses are never read here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from app.domain.errors import IllegalTransition


class Stage(StrEnum):
    ANALYSIS = "analysis"
    DEVELOPMENT = "development"
    QUALITY_GATE = "quality_gate"
    REVIEW = "review"
    MERGE = "merge"
    AWAITING_DEPLOY = "awaiting_deploy"
    DEPLOYING = "deploying"
    MONITORING = "monitoring"
    DONE = "done"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    REWORK = "rework"  # gate failed / reviewer asked for changes: back to development
    APPROVED = "approved"  # human verdict in Plane
    REJECTED = "rejected"  # human verdict in Plane
    RESUME = "resume"  # start trigger on a blocked task
    CANCEL = "cancel"  # Plane state in group `cancelled`, or the work item deleted
    ABORT = "abort"  # the work cannot go on (budget used up, job lost, project gone)
    REAPPROVE = "reapprove"  # a merge conflict was resolved: the human approves again


TERMINAL_STAGES: Final = frozenset({Stage.DONE, Stage.BLOCKED, Stage.CANCELLED})
FINISHED_STAGES: Final = frozenset({Stage.DONE, Stage.CANCELLED})
DEFAULT_MAX_REWORK: Final = 3

_CANCEL: Final = {Outcome.CANCEL: Stage.CANCELLED}
# Every working stage can be aborted into `blocked` (and resumed from there).
_ABORT: Final = {Outcome.ABORT: Stage.BLOCKED}

STAGE_TRANSITIONS: Final[dict[Stage, dict[Outcome, Stage]]] = {
    Stage.ANALYSIS: {
        Outcome.SUCCESS: Stage.DEVELOPMENT,
        Outcome.FAILURE: Stage.BLOCKED,
        **_ABORT,
        **_CANCEL,
    },
    Stage.DEVELOPMENT: {
        Outcome.SUCCESS: Stage.QUALITY_GATE,
        Outcome.FAILURE: Stage.BLOCKED,
        **_ABORT,
        **_CANCEL,
    },
    Stage.QUALITY_GATE: {
        Outcome.SUCCESS: Stage.REVIEW,
        Outcome.REWORK: Stage.DEVELOPMENT,  # capped by max_rework, then BLOCKED
        Outcome.FAILURE: Stage.BLOCKED,
        **_ABORT,
        **_CANCEL,
    },
    Stage.REVIEW: {
        Outcome.APPROVED: Stage.MERGE,
        Outcome.REJECTED: Stage.DEVELOPMENT,
        Outcome.REWORK: Stage.DEVELOPMENT,  # reviewer agent; capped by max_rework
        **_ABORT,
        **_CANCEL,
    },
    Stage.MERGE: {
        Outcome.SUCCESS: Stage.AWAITING_DEPLOY,
        Outcome.FAILURE: Stage.BLOCKED,
        # gates failed on the head that resolved a conflict; capped by max_rework
        Outcome.REWORK: Stage.DEVELOPMENT,
        Outcome.REAPPROVE: Stage.REVIEW,  # `reapprove_after_conflict = true`
        **_ABORT,
        **_CANCEL,
    },
    Stage.AWAITING_DEPLOY: {
        Outcome.SUCCESS: Stage.DEPLOYING,
        **_ABORT,
        **_CANCEL,
    },
    Stage.DEPLOYING: {
        Outcome.SUCCESS: Stage.MONITORING,
        Outcome.FAILURE: Stage.BLOCKED,
        **_ABORT,
        **_CANCEL,
    },
    Stage.MONITORING: {
        Outcome.SUCCESS: Stage.DONE,  # HEALTHY
        Outcome.FAILURE: Stage.BLOCKED,  # DEGRADED: alert only, never rolls back
        **_ABORT,
        **_CANCEL,
    },
    Stage.DONE: {},
    # RESUME goes back to the stage that failed; the table names the default.
    Stage.BLOCKED: {Outcome.RESUME: Stage.ANALYSIS, **_CANCEL},
    Stage.CANCELLED: {},
}

# Outcomes that count as one rework loop.
REWORK_OUTCOMES: Final = frozenset({Outcome.REWORK})


def next_stage(
    stage: Stage,
    outcome: Outcome,
    *,
    rework_count: int = 0,
    max_rework: int = DEFAULT_MAX_REWORK,
    resume_stage: Stage | None = None,
) -> Stage:
    """Return the stage that `outcome` leads to from `stage`.

    `rework_count` is the number of rework loops already taken: a further REWORK when
    it has reached `max_rework` blocks the task instead. `resume_stage` is the stage a
    blocked task failed in; RESUME returns there. Raises IllegalTransition for a move
    the table does not hold.
    """
    moves = STAGE_TRANSITIONS[stage]
    if outcome not in moves:
        raise IllegalTransition(stage.value, outcome.value)
    if outcome in REWORK_OUTCOMES and rework_count >= max_rework:
        return Stage.BLOCKED
    if outcome is Outcome.RESUME:
        if resume_stage is None:
            return moves[outcome]
        if resume_stage in TERMINAL_STAGES:
            raise IllegalTransition(
                stage.value, outcome.value, f"cannot resume into {resume_stage.value!r}"
            )
        return resume_stage
    return moves[outcome]
