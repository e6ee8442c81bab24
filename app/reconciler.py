"""The reconciler: per project, observe Plane, compare with Redis, replay what was missed.

A pass lists the project's work items newest first (Plane has no server-side state
filter), stopping at the last pass's watermark minus a margin — one call for an idle
project — and, when one is due, a page of the *rolling* scan (by creation, pages spaced
so that a round sees every item once in `reconcile_cover_s`). Passes are spaced so the
reconciler keeps to its share of the Plane budget (`reconcile_budget_share`), however
many projects there are. Items in trigger states that were updated before the grace
period and
whose task has no active job are replayed through `EventProcessor.route` — the same
handlers as webhooks, so a replay and a late webhook cannot both act. It also
repairs status drift (Layer B) and sweeps jobs whose runner died. One project's
failure never stops another, and nothing here raises.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from app import logs
from app.config import Settings
from app.domain.models import Task
from app.domain.stages import FINISHED_STAGES
from app.events import EventProcessor
from app.missing_items import MissingItems
from app.pipeline import JobSender, PlaneWrites
from app.plane.client import MAX_PER_PAGE, PlaneClient
from app.plane.models import WorkItem
from app.plane.status import ProjectStates, StateResolver, Trigger
from app.projects import Project, Registry
from app.reconcile_rules import PassReport, replay_wanted, stale_status
from app.reconcile_state import ReconcileStateStore
from app.store import Store
from app.sweeps import Sweeps

log = logging.getLogger(__name__)

ClientFactory = Callable[[Callable[[str], None]], PlaneClient]


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        registry: Registry,
        plane_factory: ClientFactory,
        events: EventProcessor,
        outbox: PlaneWrites,
        jobs: JobSender,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.plane_factory = plane_factory
        self.events = events
        self.outbox = outbox
        self.jobs = jobs
        self.clock = clock
        self.missing = MissingItems(settings, store, self.now)
        self.sweeps = Sweeps(settings, store, registry, outbox, jobs)
        self.state = ReconcileStateStore(store.r, store.keys)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # -- all projects -----------------------------------------------------------------
    def reconcile_plane_once(self) -> list[PassReport]:
        """One pass over every project, in this process (the CLI and tests use it)."""
        reports = [self.reconcile_project(p) for p in self.registry.projects.values()]
        self.sweep_jobs()
        self.sweep_worktrees()
        return reports

    def sweep_jobs(self) -> int:
        return self.sweeps.sweep_jobs()

    def sweep_worktrees(self) -> int:
        return self.sweeps.sweep_worktrees()

    def share_interval_s(self) -> float:
        """Seconds between two passes of a project for all the projects' passes together
        to keep to the reconciler's share of the budget (their calls per pass, smoothed)."""
        settings = self.settings
        calls = sum(
            self.state.get(p.name).calls_avg or 2.0 for p in self.registry.projects.values()
        )
        per_min = max(settings.reconcile_budget_share * settings.plane_rate_per_min, 0.1)
        return calls / per_min * 60.0

    def interval_s(self) -> float:
        """The configured interval, stretched when there are too many projects for it."""
        return max(float(self.settings.reconcile_interval_s), self.share_interval_s())

    def due_projects(self) -> list[Project]:
        """Projects whose next pass is due; marks them scheduled (the fan-out step)."""
        due = []
        now = self.clock()
        share = self.share_interval_s()
        spaced = max(float(self.settings.reconcile_interval_s), share)
        for project in self.registry.projects.values():
            state = self.state.get(project.name)
            if state.next_due > now:
                continue
            interval = spaced
            if state.webhooks_silent:  # webhooks look lost: look more often, within share
                interval = max(self.settings.reconcile_interval_s // 4, 15, share)
            self.state.schedule(project.name, now + interval)
            due.append(project)
        return due

    # -- one project ------------------------------------------------------------------
    def reconcile_project(self, project: Project) -> PassReport:
        """One guarded pass; never raises (failures are logged, counted and reported)."""
        report = PassReport(project.name)
        lock = self.state.pass_lock(project.name, self.settings.reconcile_lock_ttl_s)
        if not lock.acquire(blocking=False):
            report.ran = False
            self.store.incr_counter("reconcile_overlaps_skipped")
            return report
        try:
            with logs.bind(project=project.name):
                self._pass(project, report)
        except Exception as exc:
            report.error = f"{type(exc).__name__}: {exc}"
            log.warning("reconcile %s failed: %s", project.name, report.error)
            self.store.incr_counter(f"reconcile_failures:{project.name}")
        finally:
            try:
                lock.release()
            except Exception as exc:
                log.warning("reconcile %s: lock release: %s", project.name, exc)
            self._record(project, report)
        return report

    def _pass(self, project: Project, report: PassReport) -> None:
        def count(name: str) -> None:
            if name == "plane_calls":
                report.api_calls += 1
            self.store.incr_counter(name)

        state = self.state.get(project.name)
        passes, watermark = state.passes, state.watermark
        margin = max(self.settings.reconcile_margin_s, self.settings.reconcile_grace_s + 60)
        started = self.now()
        # The first pass looks back one margin; what is older, the rolling scan sees.
        bound = (watermark or started) - timedelta(seconds=margin)
        with self.plane_factory(count) as client:
            resolver = StateResolver(client, self.store, ttl_s=self.settings.plane_states_ttl_s)
            states = resolver.resolve(project)
            recent = list(
                client.iter_work_items(
                    project.plane_project_id,
                    per_page=MAX_PER_PAGE,  # Plane allows 1000
                    updated_after=bound,
                )
            )
            page: list[WorkItem] = []
            cursor: str | None = None
            if self.clock() >= state.rolling_next_at:  # the rolling scan's next page is due
                page, cursor = client.work_items_page(
                    project.plane_project_id,
                    cursor=state.rolling_cursor or None,
                    per_page=self.settings.reconcile_page_size,
                )
                report.rolled, report.round_done = True, cursor is None
            items = list({item.id: item for item in [*page, *recent]}.values())
            tasks = {
                t.plane_issue_id: t for t in self.store.list_tasks() if t.project == project.name
            }
            # The listing answered: the project and the key are fine, so a 404 for one
            # work item means that item.
            report.items_checked, report.deleted, suspected = self.missing.check(
                client, project, tasks, {item.id for item in items}
            )
            if suspected:
                self._recheck_later(project)
        report.scanned = len(items)
        triggers = states.trigger_ids()
        for item in items:
            trigger = triggers.get(item.state_id or "")
            if trigger is not None:
                self._consider(item, trigger, project, tasks.get(item.id), report)
        self._repair_drift(states, items, tasks, report)
        self.state.advance(project.name, started, passes + 1)
        if report.rolled:
            self.state.roll(project.name, cursor, started, self.settings.reconcile_cover_s)

    def _recheck_later(self, project: Project) -> None:
        """A suspected deletion is confirmed by a pass at least `deleted_confirm_s` later."""
        self.state.not_before(project.name, self.clock() + self.settings.deleted_confirm_s + 1)

    def _consider(
        self,
        item: WorkItem,
        trigger: Trigger,
        project: Project,
        task: Task | None,
        report: PassReport,
    ) -> None:
        if (self.now() - item.updated_at).total_seconds() < self.settings.reconcile_grace_s:
            report.skipped["within grace"] += 1
            return
        if task is not None and self.store.active_job(task) is not None:
            report.skipped["active job"] += 1
            return
        if not replay_wanted(trigger, item, task):
            report.skipped["in step"] += 1
            return
        decision = self.events.route(item, project, source="reconciler replay")
        now = self.store.get_task_by_issue(item.id)
        with logs.bind(
            work_item=now.work_item_id if now else None,
            task_id=now.id if now else None,
            stage=now.stage.value if now else None,
        ):
            log.info("reconcile: replayed %s (%s): %s", item.id, trigger.value, decision)
        report.replayed += 1
        self.store.incr_counter(f"replays:{project.name}")
        self.state.note_replay(project.name, self.now())

    def _repair_drift(
        self,
        states: ProjectStates,
        items: list[WorkItem],
        tasks: dict[str, Task],
        report: PassReport,
    ) -> None:
        seen = {item.id: item for item in items}
        triggers = states.trigger_ids()
        for issue_id, task in tasks.items():
            if task.stage in FINISHED_STAGES:
                continue
            item = seen.get(issue_id)
            grace_s = self.settings.reconcile_grace_s
            if not task.status_sync_ok or (
                item is not None and stale_status(task, item, states, triggers, self.now(), grace_s)
            ):
                # Never a write from this copy of the task: the outbox writes the status
                # the task has when it is flushed.
                self.store.update_task(task.id, status_sync_ok=False)
                self.outbox.show_stage(task.id)
                report.repaired += 1
                self.store.incr_counter("status_repaired")

    def _record(self, project: Project, report: PassReport) -> None:
        try:
            self.store.incr_counter("reconcile_passes")
            self.state.record_pass(
                project.name, self.now(), report.api_calls, report.replayed, report.error
            )
            self._check_webhooks(project, report)
        except Exception as exc:
            log.warning("reconcile %s: recording the pass failed: %s", project.name, exc)

    def _check_webhooks(self, project: Project, report: PassReport) -> None:
        """The webhook-loss meter: replays with no recent webhook mean deliveries stopped."""
        last = self.state.last_webhooks().get(project.name)
        silent_for = (
            (self.now() - datetime.fromisoformat(last)).total_seconds() if last else float("inf")
        )
        silent = report.replayed > 0 and silent_for > self.settings.webhook_silence_s
        if silent:
            log.warning(
                "project %s: %d transition(s) replayed but no webhook for %s; its "
                "Plane webhook may be disabled (Plane disables one after 6 failed "
                "deliveries). Reconciling it more often until webhooks return.",
                project.name,
                report.replayed,
                "ever" if last is None else f"{silent_for:.0f}s",
            )
            self.state.mark_silent(project.name, True)
        elif silent_for <= self.settings.webhook_silence_s:
            self.state.mark_silent(project.name, False)
