"""What a handler, the event processor or the job runner did: typed, not prose.

Callers branch on `kind` (and read `stage`, `detail`); logs and the CLI print `str()`;
the metrics label is `kind.value`. Timeline entries use the closed set `TimelineKind`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from app.domain.stages import Stage


class Handled(StrEnum):
    STARTED = "started"  # a task was created for the work item
    RESUMED = "resumed"  # a blocked task went back to the stage that failed
    MOVED = "moved"  # the task moved (a verdict, a stage result)
    CANCELLED = "cancelled"
    BLOCKED = "blocked"  # aborted into `blocked` (budget, project gone)
    WAITING = "waiting"  # nothing moved: a slot, CI, a human
    RETRYING = "retrying"  # the same stage again, with backoff
    STOPPED = "stopped"  # a job not run or stopped (task cancelled, superseded)
    IGNORED = "ignored"  # nothing to do, with the reason
    ANSWERED = "answered"  # commands from a Plane comment acted on and answered


@dataclass(frozen=True)
class Result:
    kind: Handled
    detail: str = ""
    stage: Stage | None = None  # where the task is now, when that is the point

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.detail}" if self.detail else self.kind.value


def ignored(reason: str) -> Result:
    return Result(Handled.IGNORED, reason)


class TimelineKind(StrEnum):
    """Every kind of entry on a task's timeline (`pf:task:<id>:log`)."""

    CREATED = "created"
    START = "start"
    TRANSITION = "transition"
    JOB = "job"
    AGENT = "agent"
    STAGE = "stage"
    WAITING = "waiting"
    RETRY = "retry"
    IGNORED = "ignored"
    STATUS = "status"
    COMMENT = "comment"
    OUTBOX = "outbox"
    PLANE = "plane"
    FORGE = "forge"
    WARNING = "warning"
    ACTION = "action"  # an operator's retry/cancel/requeue or a comment's command
