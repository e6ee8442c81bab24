"""The stage machine: every row of DESIGN section 5 and every illegal move."""

from __future__ import annotations

import pytest

from app.domain.errors import IllegalTransition
from app.domain.stages import (
    STAGE_TRANSITIONS,
    TERMINAL_STAGES,
    Outcome,
    Stage,
    next_stage,
)

S, O = Stage, Outcome  # noqa: E741  (short names keep the table readable)

LEGAL = [
    (S.ANALYSIS, O.SUCCESS, S.DEVELOPMENT),
    (S.ANALYSIS, O.FAILURE, S.BLOCKED),
    (S.DEVELOPMENT, O.SUCCESS, S.QUALITY_GATE),
    (S.DEVELOPMENT, O.FAILURE, S.BLOCKED),
    (S.QUALITY_GATE, O.SUCCESS, S.REVIEW),
    (S.QUALITY_GATE, O.REWORK, S.DEVELOPMENT),
    (S.QUALITY_GATE, O.FAILURE, S.BLOCKED),
    (S.REVIEW, O.APPROVED, S.MERGE),
    (S.REVIEW, O.REJECTED, S.DEVELOPMENT),
    (S.REVIEW, O.REWORK, S.DEVELOPMENT),
    (S.MERGE, O.SUCCESS, S.AWAITING_DEPLOY),
    (S.MERGE, O.FAILURE, S.BLOCKED),
    (S.MERGE, O.REWORK, S.DEVELOPMENT),
    (S.MERGE, O.REAPPROVE, S.REVIEW),
    (S.AWAITING_DEPLOY, O.SUCCESS, S.DEPLOYING),
    (S.DEPLOYING, O.SUCCESS, S.MONITORING),
    (S.DEPLOYING, O.FAILURE, S.BLOCKED),
    (S.MONITORING, O.SUCCESS, S.DONE),
    (S.MONITORING, O.FAILURE, S.BLOCKED),
    (S.BLOCKED, O.RESUME, S.ANALYSIS),
] + [(s, O.CANCEL, S.CANCELLED) for s in S if s not in (S.DONE, S.CANCELLED)]
LEGAL += [(s, O.ABORT, S.BLOCKED) for s in S if s not in (S.DONE, S.CANCELLED, S.BLOCKED)]


def test_table_holds_every_stage() -> None:
    assert set(STAGE_TRANSITIONS) == set(Stage)
    assert {s.value for s in Stage} == {
        "analysis",
        "development",
        "quality_gate",
        "review",
        "merge",
        "awaiting_deploy",
        "deploying",
        "monitoring",
        "done",
        "blocked",
        "cancelled",
    }


def test_table_is_exactly_the_legal_rows() -> None:
    rows = {(s, o, t) for s, moves in STAGE_TRANSITIONS.items() for o, t in moves.items()}
    assert rows == set(LEGAL)


@pytest.mark.parametrize(("stage", "outcome", "expected"), LEGAL)
def test_legal_move(stage: Stage, outcome: Outcome, expected: Stage) -> None:
    assert next_stage(stage, outcome) is expected


ILLEGAL = [(s, o) for s in Stage for o in Outcome if o not in STAGE_TRANSITIONS[s]]


@pytest.mark.parametrize(("stage", "outcome"), ILLEGAL)
def test_illegal_move_is_rejected(stage: Stage, outcome: Outcome) -> None:
    with pytest.raises(IllegalTransition, match=f"stage '{stage.value}'"):
        next_stage(stage, outcome)


def test_done_and_cancelled_accept_nothing() -> None:
    assert STAGE_TRANSITIONS[S.DONE] == {}
    assert STAGE_TRANSITIONS[S.CANCELLED] == {}
    assert {S.DONE, S.BLOCKED, S.CANCELLED} == TERMINAL_STAGES


@pytest.mark.parametrize("stage", [S.QUALITY_GATE, S.REVIEW])
def test_rework_within_limit_goes_back_to_development(stage: Stage) -> None:
    assert next_stage(stage, O.REWORK, rework_count=2, max_rework=3) is S.DEVELOPMENT


@pytest.mark.parametrize("stage", [S.QUALITY_GATE, S.REVIEW])
def test_rework_past_max_rework_blocks(stage: Stage) -> None:
    assert next_stage(stage, O.REWORK, rework_count=3, max_rework=3) is S.BLOCKED


def test_max_rework_zero_blocks_at_first_gate_failure() -> None:
    assert next_stage(S.QUALITY_GATE, O.REWORK, rework_count=0, max_rework=0) is S.BLOCKED


def test_human_rejection_is_not_capped_by_max_rework() -> None:
    assert next_stage(S.REVIEW, O.REJECTED, rework_count=99, max_rework=1) is S.DEVELOPMENT


def test_resume_returns_to_the_stage_that_failed() -> None:
    assert next_stage(S.BLOCKED, O.RESUME, resume_stage=S.DEPLOYING) is S.DEPLOYING


@pytest.mark.parametrize("target", sorted(TERMINAL_STAGES))
def test_resume_into_a_terminal_stage_is_illegal(target: Stage) -> None:
    with pytest.raises(IllegalTransition, match="cannot resume"):
        next_stage(S.BLOCKED, O.RESUME, resume_stage=target)
