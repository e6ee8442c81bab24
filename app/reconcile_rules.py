"""What a reconcile pass decides, without I/O: whether a work item's trigger state is a
move to replay, whether a task's Plane status is stale indication to repair, and the
pass's report."""

from __future__ import annotations

from collections import Counter as Tally
from dataclasses import dataclass, field
from datetime import datetime

from app.domain.models import Task
from app.domain.stages import FINISHED_STAGES, Stage
from app.plane.models import WorkItem
from app.plane.status import STAGE_STATUS_KEY, ProjectStates, Trigger


def replay_wanted(trigger: Trigger, item: WorkItem, task: Task | None) -> bool:
    """Whether an item in a trigger state (past the grace period, no active job) is a
    move the pipeline missed."""
    if trigger is Trigger.START:
        # A blocked task resumes only on a move made after it was blocked: a start
        # state left over from before (our own status write failed) is no trigger.
        return task is None or (task.stage is Stage.BLOCKED and item.updated_at > task.updated_at)
    if trigger in (Trigger.APPROVED, Trigger.REJECTED):
        return task is not None and task.stage is Stage.REVIEW
    return task is not None and task.stage not in FINISHED_STAGES


def stale_status(
    task: Task,
    item: WorkItem,
    states: ProjectStates,
    triggers: dict[str, Trigger],
    now: datetime,
    grace_s: float,
) -> bool:
    """Whether the item's Plane state is not the one the task's stage shows, and is old
    enough to repair (not a move within the grace period, nor a human's input)."""
    if (now - item.updated_at).total_seconds() < grace_s:
        return False
    expected = states.resolve(STAGE_STATUS_KEY[task.stage])
    # A trigger state set after the task last changed is a human's input (replayed, not
    # repaired); one older than that is stale indication.
    human_input = (item.state_id or "") in triggers and item.updated_at > task.updated_at
    return expected is not None and item.state_id != expected and not human_input


@dataclass
class PassReport:
    project: str
    rolled: bool = False  # the rolling scan read a page
    round_done: bool = False  # ... its last: every item was seen once since the round began
    api_calls: int = 0
    scanned: int = 0
    replayed: int = 0
    repaired: int = 0
    items_checked: int = 0
    deleted: int = 0
    skipped: Tally[str] = field(default_factory=Tally)
    error: str | None = None
    ran: bool = True

    def summary(self) -> str:
        if not self.ran:
            return f"{self.project}: skipped (a pass is already running)"
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())) or "none"
        rolling = " + rolling page" + (" (round complete)" if self.round_done else "")
        return (
            f"{self.project}: incremental scan{rolling if self.rolled else ''}, "
            f"{self.scanned} item(s), {self.api_calls} API call(s), "
            f"{self.replayed} replayed, {self.repaired} status repaired, "
            f"{self.items_checked} item(s) checked, {self.deleted} cancelled as deleted, "
            f"skipped: {skipped}" + (f", ERROR: {self.error}" if self.error else "")
        )
