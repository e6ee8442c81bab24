"""The decision table: every (stage, event) pair, its next stage and its effects. No Redis."""

from __future__ import annotations

import pytest

from app.domain.decisions import (
    Aborted,
    CancelledInPlane,
    CancelRequested,
    Decision,
    Event,
    ItemDeleted,
    Policy,
    Resumed,
    StageEnded,
    TaskView,
    VerdictGiven,
    decide,
)
from app.domain.errors import IllegalTransition
from app.domain.stages import Outcome, Stage

S = Stage
POLICY = Policy(max_rework=2)
EVENTS: dict[str, Event] = {
    "success": StageEnded(Outcome.SUCCESS, "ok"),
    "failure": StageEnded(Outcome.FAILURE, "agent failed"),
    "rework": StageEnded(Outcome.REWORK, "gate failed"),
    "reapprove": StageEnded(Outcome.REAPPROVE, "conflict resolved"),
    "approved": VerdictGiven(True, "webhook"),
    "rejected": VerdictGiven(False, "webhook", feedback="fix it"),
    "abort": Aborted("budget used up"),
    "resume": Resumed("webhook"),
    "cancel": CancelledInPlane("webhook"),
    "operator_cancel": CancelRequested("cli (user ada)"),
    "deleted": ItemDeleted("404 twice"),
}
WORKING = [S.ANALYSIS, S.DEVELOPMENT, S.QUALITY_GATE, S.REVIEW, S.MERGE]
WORKING += [S.AWAITING_DEPLOY, S.DEPLOYING, S.MONITORING]

# (stage, event) -> next stage; every pair not listed must be refused.
LEGAL: dict[tuple[Stage, str], Stage] = {
    (S.ANALYSIS, "success"): S.DEVELOPMENT,
    (S.ANALYSIS, "failure"): S.BLOCKED,
    (S.DEVELOPMENT, "success"): S.QUALITY_GATE,
    (S.DEVELOPMENT, "failure"): S.BLOCKED,
    (S.QUALITY_GATE, "success"): S.REVIEW,
    (S.QUALITY_GATE, "rework"): S.DEVELOPMENT,
    (S.QUALITY_GATE, "failure"): S.BLOCKED,
    (S.REVIEW, "approved"): S.MERGE,
    (S.REVIEW, "rejected"): S.DEVELOPMENT,
    (S.REVIEW, "rework"): S.DEVELOPMENT,
    (S.MERGE, "success"): S.AWAITING_DEPLOY,
    (S.MERGE, "failure"): S.BLOCKED,
    (S.MERGE, "rework"): S.DEVELOPMENT,  # gates failed after a conflict resolution
    (S.MERGE, "reapprove"): S.REVIEW,
    (S.AWAITING_DEPLOY, "success"): S.DEPLOYING,
    (S.DEPLOYING, "success"): S.MONITORING,
    (S.DEPLOYING, "failure"): S.BLOCKED,
    (S.MONITORING, "success"): S.DONE,
    (S.MONITORING, "failure"): S.BLOCKED,
    (S.BLOCKED, "resume"): S.DEVELOPMENT,  # the stage it failed in (below)
    (S.BLOCKED, "cancel"): S.CANCELLED,
    (S.BLOCKED, "operator_cancel"): S.CANCELLED,
    (S.BLOCKED, "deleted"): S.CANCELLED,
    **{(s, "abort"): S.BLOCKED for s in WORKING},
    **{(s, "cancel"): S.CANCELLED for s in WORKING},
    **{(s, "operator_cancel"): S.CANCELLED for s in WORKING},
    **{(s, "deleted"): S.CANCELLED for s in WORKING},
}
PAIRS = [(stage, name) for stage in Stage for name in EVENTS]


def view(stage: Stage, rework_count: int = 0) -> TaskView:
    return TaskView(stage, rework_count=rework_count, failed_stage=S.DEVELOPMENT)


@pytest.mark.parametrize(("stage", "name"), PAIRS, ids=[f"{s.value}-{n}" for s, n in PAIRS])
def test_every_stage_and_event(stage: Stage, name: str) -> None:
    event = EVENTS[name]
    if (stage, name) not in LEGAL:
        with pytest.raises(IllegalTransition):
            decide(view(stage), event, POLICY)
        return
    decision = decide(view(stage), event, POLICY)
    assert decision.stage is LEGAL[(stage, name)]
    check_effects(stage, name, decision)


def check_effects(stage: Stage, name: str, decision: Decision) -> None:
    effects = decision.effects
    terminal = decision.stage in (S.DONE, S.BLOCKED, S.CANCELLED)
    # Every way into `blocked` is the same: reason kept, where it failed, a comment,
    # the deploy slot freed, no next job.
    if decision.stage is S.BLOCKED:
        assert decision.fields["failed_stage"] is stage
        assert decision.fields["blocked_reason"] == decision.reason
        assert len(effects.comments) == 1 and "Blocked in stage" in effects.comments[0]
    assert effects.free_deploy_slot is terminal
    assert effects.queue_job is not terminal
    assert effects.cleanup_worktree is (decision.stage is S.DONE)
    if decision.stage is S.CANCELLED:
        # Plane already shows a cancel made there; an operator's is shown to it.
        assert effects.cancel_active_job
        assert effects.show_status is (name == "operator_cancel")
        assert effects.drop_plane_writes is (name == "deleted")
    else:
        assert effects.show_status and not effects.drop_plane_writes


def test_rework_past_max_rework_blocks_with_the_reason() -> None:
    decision = decide(view(S.QUALITY_GATE, rework_count=2), EVENTS["rework"], POLICY)
    assert decision.stage is S.BLOCKED
    assert decision.reason == "gate failed; max_rework (2) reached"
    assert decision.fields["rework_count"] == 3


def test_rejected_verdict_carries_the_feedback_and_counts_a_loop() -> None:
    decision = decide(view(S.REVIEW, rework_count=1), EVENTS["rejected"], POLICY)
    assert decision.fields == {"feedback": "fix it", "rework_count": 2}


def test_resume_goes_back_to_the_failed_stage_or_analysis() -> None:
    assert decide(view(S.BLOCKED), EVENTS["resume"], POLICY).stage is S.DEVELOPMENT
    fresh = TaskView(S.BLOCKED)
    decision = decide(fresh, EVENTS["resume"], POLICY)
    assert decision.stage is S.ANALYSIS and decision.fields == {"blocked_reason": None}


def test_blocked_comment_escapes_the_reason() -> None:
    decision = decide(view(S.MONITORING), Aborted("<script>x</script>"), POLICY)
    assert "&lt;script&gt;" in decision.effects.comments[0]


def test_operator_cancel_names_where_it_came_from() -> None:
    decision = decide(view(S.REVIEW), EVENTS["operator_cancel"], POLICY)
    assert decision.reason == "cancelled by cli (user ada)"
