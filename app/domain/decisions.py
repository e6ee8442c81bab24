"""What follows an event on a task, as data: the next stage, why, and the effects.

`decide` is the one decision path. A stage result, an abort (budget used up, job lost
too often, project gone), a human verdict, a resume, a cancel from Plane or from an
operator (shown to Plane; one from Plane is not written back) and a deleted work item
all go through the stage table (`next_stage`), and every one comes back as a
`Decision`: the stage to move to, the reason (also the timeline entry), the task fields
to set and the `Effects` to carry out — show the status, post comments, free the deploy
slot, queue the next stage's job, cancel the active job, clean the worktree, drop what
still waits for Plane. No I/O here: callers pass plain values and apply the result
(`app.apply`). An event the table does not allow raises IllegalTransition.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.domain.stages import TERMINAL_STAGES, Outcome, Stage, next_stage


# -- events ------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageEnded:
    """A job's stage work ended with `outcome` (SUCCESS, FAILURE or REWORK)."""

    outcome: Outcome
    message: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Aborted:
    """The task cannot go on where it is (budget used up, job lost, project gone)."""

    reason: str


@dataclass(frozen=True)
class VerdictGiven:
    approved: bool
    source: str
    feedback: str = ""


@dataclass(frozen=True)
class Resumed:
    """A start trigger on a blocked task: back to the stage that failed."""

    source: str


@dataclass(frozen=True)
class CancelledInPlane:
    source: str


@dataclass(frozen=True)
class CancelRequested:
    """An operator cancelled the task (the dashboard, the CLI, a Plane comment)."""

    source: str


@dataclass(frozen=True)
class ItemDeleted:
    """The work item is gone from Plane (checked twice, its project still there)."""

    detail: str


Event = (
    StageEnded | Aborted | VerdictGiven | Resumed | CancelledInPlane | CancelRequested | ItemDeleted
)


# -- inputs and output -------------------------------------------------------------------
@dataclass(frozen=True)
class TaskView:
    """What a decision needs to know of the task."""

    stage: Stage
    rework_count: int = 0
    failed_stage: Stage | None = None


def task_view(task: Any) -> TaskView:
    """The decision's view of a `Task` (anything with these three attributes)."""
    return TaskView(task.stage, task.rework_count, task.failed_stage)


@dataclass(frozen=True)
class Policy:
    """What a decision needs to know of the project."""

    max_rework: int


@dataclass(frozen=True)
class Effects:
    show_status: bool = True  # mirror the new stage to Plane (through the outbox)
    comments: tuple[str, ...] = ()  # HTML comments to post, in order
    free_deploy_slot: bool = False
    queue_job: bool = False  # create and send the new stage's job
    cancel_active_job: bool = False  # a job other than the one that ended
    cleanup_worktree: bool = False
    drop_plane_writes: bool = False  # nothing more goes to Plane for this task


@dataclass(frozen=True)
class Decision:
    stage: Stage  # where the task moves to
    outcome: Outcome
    reason: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    effects: Effects = field(default_factory=Effects)

    @property
    def blocked(self) -> bool:
        return self.stage is Stage.BLOCKED


def decide(task: TaskView, event: Event, policy: Policy) -> Decision:
    """The decision for `event` on a task in `task.stage`; IllegalTransition if none."""
    if isinstance(event, StageEnded):
        return _stage_ended(task, event, policy)
    if isinstance(event, Aborted):
        return _moved(task, Outcome.ABORT, event.reason, {})
    if isinstance(event, VerdictGiven):
        return _verdict(task, event, policy)
    if isinstance(event, Resumed):
        stage = next_stage(
            task.stage, Outcome.RESUME, resume_stage=task.failed_stage or Stage.ANALYSIS
        )
        return Decision(
            stage,
            Outcome.RESUME,
            f"resumed by {event.source}",
            {"blocked_reason": None},
            Effects(queue_job=True),
        )
    if isinstance(event, CancelledInPlane):
        # No status write: Plane already shows the cancelled state it came from.
        return _cancelled(task, f"cancelled in Plane [{event.source}]", shown_by_plane=True)
    if isinstance(event, CancelRequested):
        # Plane is told: the work item shows Cancelled like any other stage.
        return _cancelled(task, f"cancelled by {event.source}", shown_by_plane=False)
    # Deleted: nothing more can go to Plane.
    return _cancelled(task, f"work item deleted in Plane ({event.detail})", gone=True)


def _cancelled(
    task: TaskView, reason: str, *, shown_by_plane: bool = True, gone: bool = False
) -> Decision:
    return Decision(
        next_stage(task.stage, Outcome.CANCEL),
        Outcome.CANCEL,
        reason,
        {} if shown_by_plane else {"show_cancelled": True},
        Effects(
            show_status=not shown_by_plane,
            free_deploy_slot=True,
            cancel_active_job=True,
            drop_plane_writes=gone,
        ),
    )


def _stage_ended(task: TaskView, event: StageEnded, policy: Policy) -> Decision:
    fields = dict(event.fields)
    message = event.message
    if event.outcome is Outcome.REWORK:
        fields["rework_count"] = task.rework_count + 1
        if task.rework_count >= policy.max_rework:
            message = f"{message}; max_rework ({policy.max_rework}) reached"
    return _moved(task, event.outcome, message, fields, rework=policy.max_rework)


def _verdict(task: TaskView, event: VerdictGiven, policy: Policy) -> Decision:
    verdict = "approved" if event.approved else "rejected"
    outcome = Outcome.APPROVED if event.approved else Outcome.REJECTED
    fields: dict[str, Any] = {}
    if not event.approved:
        fields.update(feedback=event.feedback, rework_count=task.rework_count + 1)
    return _moved(task, outcome, f"verdict {verdict} [{event.source}]", fields)


def _moved(
    task: TaskView,
    outcome: Outcome,
    reason: str,
    fields: dict[str, Any],
    *,
    rework: int | None = None,
) -> Decision:
    stage = next_stage(
        task.stage,
        outcome,
        rework_count=task.rework_count,
        max_rework=policy_rework(rework),
    )
    comments: tuple[str, ...] = ()
    if stage is Stage.BLOCKED:
        fields.update(failed_stage=task.stage, blocked_reason=reason)
        comments = (blocked_comment(task.stage, reason),)
    terminal = stage in TERMINAL_STAGES
    return Decision(
        stage,
        outcome,
        reason,
        fields,
        Effects(
            comments=comments,
            free_deploy_slot=terminal,
            queue_job=not terminal,
            cleanup_worktree=stage is Stage.DONE,
        ),
    )


def policy_rework(rework: int | None) -> int:
    # Only a stage result's REWORK is capped (next_stage caps REWORK outcomes only).
    return rework if rework is not None else 1 << 30


def blocked_comment(stage: Stage, reason: str) -> str:
    return (
        f"<p>⛔ Blocked in stage <b>{stage.value}</b>: {html.escape(reason[:1500])}</p>"
        f"<p>Move the work item to <b>To Analyse</b> to resume from {stage.value}.</p>"
    )
