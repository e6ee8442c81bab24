"""The outbox's status writes: which statuses a task's moves show, and when.

Every stage a task moved into is shown, in order, on a quiet board; under congestion
the stages of automated work are passed over (or wait a few seconds for a quieter moment
or the next stage) while a human's turn (review, blocked) goes first, at the priority of
a trigger read. Nothing is written that Plane already shows, and no worker thread ever
waits for the budget here: a busy budget asks the flusher to look again shortly.
"""

from __future__ import annotations

from app.domain.errors import PlaneError, PlaneflowError, TemporaryError
from app.domain.models import Task
from app.domain.results import TimelineKind
from app.domain.stages import Stage
from app.outbox_store import OutboxStore
from app.plane.client import PlaneClient
from app.plane.ratelimit import Priority, RateBudget
from app.plane.status import STAGE_STATUS_KEY, StateResolver
from app.projects import Project
from app.store import Store

HUMAN_STATUSES = frozenset({"code_review", "blocked"})  # a human's turn
# Stages of automated work: on a busy board (less than half the budget free) they wait
# a few seconds for a quieter moment or the next stage; a human's turn and the end do not.
TRANSIENT_STATUSES = frozenset(
    {
        "analysis",
        "in_progress",
        "quality_gate",
        "approved",
        "awaiting_deploy",
        "deploying",
        "monitoring",
    }
)
TRANSIENT_WAIT_S = 5.0
BUDGET_WAIT_S = 2.0  # a flush never waits for the budget in a worker thread


def budget_ticket(client: PlaneClient, project: Project) -> int:
    """A ticket of `client`'s budget for the project if a request may go now (-1: no
    budget at all), else 0."""
    budget = client.budget_for(project.plane_project_id)
    return -1 if budget is None else budget.try_acquire()


class StatusWriter:
    def __init__(
        self,
        store: Store,
        outbox: OutboxStore,
        status_client: PlaneClient,
        resolver: StateResolver,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.resolver = resolver
        self.status_client = status_client
        # A status that asks a human to act (review, blocked) goes before the progress
        # of automated stages: at the priority of a trigger read.
        self.human_client = status_client.at_priority(Priority.TRIGGER)
        self._passing: dict[str, RateBudget] = {}

    def write(self, task: Task, project: Project, moved: list[str]) -> tuple[bool, float]:
        """Show the stages the task moved through, ending with its stage now.

        Each stage in between is written only if the budget has room at once; under
        congestion they are passed over and only the current one is written (waiting for
        the budget). A stage of automated work is shown, even when it is the current one,
        only while half the budget is free; otherwise it waits a few seconds for a
        quieter moment or for the next stage (review, blocked and done always go). Nothing is
        written that Plane already shows (its state as last seen in a webhook or a read,
        or as we wrote it). (whether a write was made, seconds to look again or 0);
        raises PlaneError/TemporaryError for a failure worth retrying.
        """
        written = False
        plan: list[tuple[str, str]] = []
        try:
            plan = self._plan(task, project, moved)
            for index, (key, state_id) in enumerate(plan):
                last = index == len(plan) - 1
                passing = not last or key in TRANSIENT_STATUSES
                if passing:
                    ticket = self.status_budget_free(project)
                else:  # a human's turn, or the end: the full status share
                    client = self.human_client if key in HUMAN_STATUSES else self.status_client
                    ticket = budget_ticket(client, project)
                if not ticket:
                    if last:  # nothing consumed: the next flush shows it, or what follows
                        return written, TRANSIENT_WAIT_S if passing else BUDGET_WAIT_S
                    continue  # coalesced: the budget would make us wait
                self._write_status(task, project, key, state_id, ticket=ticket)
                written = True
        except PlaneError as exc:
            if exc.retryable:
                raise
            self.outbox.consume_stages(task.id, len(moved))
            return self._status_failed(task, self._wanted(task, moved), str(exc)), 0.0
        except TemporaryError:
            raise
        except PlaneflowError as exc:
            self.outbox.consume_stages(task.id, len(moved))
            return self._status_failed(task, self._wanted(task, moved), str(exc)), 0.0
        if not plan and moved and task.stage is not Stage.CANCELLED:
            key = self._wanted(task, moved)
            self.store.update_task(task.id, status_key=key, status_sync_ok=True)
            self.store.record(task.id, TimelineKind.STATUS, f"status {key!r} already shown")
        self.outbox.consume_stages(task.id, len(moved))
        return written, 0.0

    @staticmethod
    def _wanted(task: Task, moved: list[str]) -> str:
        return STAGE_STATUS_KEY[Stage(moved[-1])] if moved else STAGE_STATUS_KEY[task.stage]

    def _plan(self, task: Task, project: Project, moved: list[str]) -> list[tuple[str, str]]:
        """(status key, state id) to write, in order: each stage moved into, ending with
        the current one; consecutive repeats and what Plane already shows left out."""
        if task.stage is Stage.CANCELLED and not task.show_cancelled:
            return []  # Plane shows it already: it is where the cancel came from
        # `moved` and `task` come from one read: the last stage moved into is the task's
        # stage. Only when nothing moved (a new task, a drift repair) is it added here.
        keys = [
            STAGE_STATUS_KEY[Stage(s)]
            for s in moved
            if s != Stage.CANCELLED.value or task.show_cancelled
        ]
        if not keys:
            keys = [STAGE_STATUS_KEY[task.stage]]
        states = self.resolver.resolve(project)
        shown = task.plane_state_id if task.status_sync_ok else None
        plan: list[tuple[str, str]] = []
        for key in keys:
            state_id = states.resolve(key)
            if state_id is None:
                raise PlaneflowError(
                    f"project {project.name!r} has no state for {key!r} (run `planeflow "
                    f"plane ensure-states --project {project.name}`)"
                )
            if state_id != (plan[-1][1] if plan else shown):
                plan.append((key, state_id))
        return plan

    def status_budget_free(self, project: Project) -> int:
        """A budget ticket if a passed stage's status may be shown now (-1: no budget at
        all), else 0: only while half the budget (the project's key's) is free, so on a
        busy board the latest statuses and the comments keep their room."""
        budget = self.status_client.budget_for(project.plane_project_id)
        if budget is None:
            return -1
        passing = self._passing.get(project.plane_project_id)
        if passing is None:
            passing = self._passing[project.plane_project_id] = budget.at(Priority.PASSING)
        return passing.try_acquire()

    def _write_status(
        self, task: Task, project: Project, key: str, state_id: str, *, ticket: int
    ) -> None:
        """`ticket`: the budget already taken for it (0: the client waits for the budget)."""
        waiting = self.human_client if key in HUMAN_STATUSES else self.status_client
        client = (self.status_client if ticket else waiting).prepaid(ticket)
        client.patch_work_item(project.plane_project_id, task.plane_issue_id, state=state_id)
        self.store.update_task(
            task.id, status_key=key, status_sync_ok=True, plane_state_id=state_id
        )
        self.store.record(task.id, TimelineKind.STATUS, f"status {key!r} synced")

    def _status_failed(self, task: Task, key: str, error: str) -> bool:
        # Not retried here: the reconciler's drift repair looks again on its next pass.
        self.store.update_task(task.id, status_key=key, status_sync_ok=False)
        self.store.record(
            task.id, TimelineKind.STATUS, f"status {key!r} sync FAILED: {error[:300]}"
        )
        self.store.incr_counter("status_sync_failures")
        return False

    # -- comments ----------------------------------------------------------------------
