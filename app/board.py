"""The board as an operator reads it: tasks by stage, queues, projects, recent actions.

One read model for the dashboard (`app.dashboard`) and the terminal
(`planeflow tasks --watch`): plain JSON-ready dicts built from the store, the
reconciler's state and Dramatiq's queues. Nothing secret is in it — no key, token or
webhook secret, and a repository URL's credentials are cut — and nothing user-written
is trusted: the page renders every value as text. Finished tasks (done, cancelled) are
listed up to `FINISHED_SHOWN` each, newest first; their counts are complete.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from app.config import Settings
from app.domain.models import Job, Task, utcnow
from app.domain.stages import FINISHED_STAGES, Stage
from app.plane.ratelimit import key_digest
from app.projects import Project, Registry
from app.queue_state import QueueState
from app.reconcile_state import ReconcileStateStore
from app.store import Store

FINISHED_SHOWN = 20
# The pipeline's order, then where cards end: blocked (a human's turn), done, cancelled.
STAGE_ORDER = [s.value for s in Stage if s not in (Stage.BLOCKED, *FINISHED_STAGES)] + [
    Stage.BLOCKED.value,
    Stage.DONE.value,
    Stage.CANCELLED.value,
]


class Board:
    def __init__(
        self, settings: Settings, store: Store, registry: Registry, queues: QueueState
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.queues = queues
        self.reconcile = ReconcileStateStore(store.r, store.keys)

    # -- the whole board --------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        tasks, counted = self.store.board_tasks(FINISHED_SHOWN * 5)
        jobs = self._jobs(tasks)
        last = self.store.last_timeline_ids([t.id for t in tasks])
        now = utcnow()
        by_stage: dict[str, list[dict[str, Any]]] = {stage: [] for stage in STAGE_ORDER}
        for task in sorted(tasks, key=lambda t: t.updated_at, reverse=True):
            row = self.task_row(task, jobs.get(task.id), now)
            row["last_event"] = last.get(task.id, "")
            by_stage[task.stage.value].append(row)
        counts = {stage: counted.get(stage, 0) for stage in STAGE_ORDER}
        for stage in FINISHED_STAGES:
            del by_stage[stage.value][FINISHED_SHOWN:]
        return {
            "generated_at": now.isoformat(),
            "stages": STAGE_ORDER,
            "counts": counts,
            "tasks": by_stage,
            "queues": self.queue_rows(),
            "projects": self.project_rows(),
            "actions": self.store.recent_actions(15),
        }

    def _jobs(self, tasks: list[Task]) -> dict[str, Job]:
        """Each task's active job, read in one round trip."""
        jobs = self.store.jobs_by_id([t.active_job_id for t in tasks if t.active_job_id])
        return {t.id: jobs[t.active_job_id] for t in tasks if t.active_job_id in jobs}

    def task_row(self, task: Task, job: Job | None, now: datetime) -> dict[str, Any]:
        project = self.registry.get(task.project)
        budget = project.budget if project else None
        return {
            "id": task.id,
            "work_item": task.work_item_id,
            "title": task.title,
            "stage": task.stage.value,
            "project": task.project,
            # times, not ages: the board changes only when something happens
            "created_at": task.created_at.isoformat(),
            "updated_at": task.updated_at.isoformat(),
            "active_job": job_row(job) if job is not None and job.is_active else None,
            "attempts": task.attempts_used,
            "budget": {
                "attempts": [task.attempts_used, budget.attempts if budget else None],
                "agent_seconds": [
                    round(task.agent_seconds),
                    budget.agent_seconds if budget else None,
                ],
                "tokens": [task.tokens_used, budget.tokens if budget else None],
            },
            "rework": task.rework_count,
            "blocked_reason": task.blocked_reason,
            "failed_stage": task.failed_stage.value if task.failed_stage else None,
            "pr_url": safe_url(task.pr_url),
            "plane_url": self.plane_url(project, task) if project else None,
            "can_retry": task.stage is Stage.BLOCKED,
            "can_cancel": task.stage not in FINISHED_STAGES,
        }

    def plane_url(self, project: Project, task: Task) -> str:
        base = (self.settings.plane_web_url or self.settings.plane_base_url).rstrip("/")
        ws = quote(self.settings.plane_workspace, safe="")
        pid, iid = quote(project.plane_project_id, safe=""), quote(task.plane_issue_id, safe="")
        return f"{base}/{ws}/projects/{pid}/issues/{iid}"

    # -- one task ---------------------------------------------------------------------
    def task_detail(self, work_item: str) -> dict[str, Any] | None:
        task = self.store.find_task(work_item)
        if task is None:
            return None
        job = self.store.active_job(task)
        row = self.task_row(task, job, utcnow())
        row["branch"] = task.branch
        row["timeline"] = [
            {"ts": e.get("ts", ""), "kind": e.get("kind", ""), "message": e.get("message", "")}
            for e in self.store.timeline(task.id)
        ]
        return row

    # -- queues and projects -------------------------------------------------------------
    def queue_rows(self) -> list[dict[str, Any]]:
        rows = []
        for depth in self.queues.depths():
            dead = self.queues.dead_letters(depth.queue) if depth.dead else []
            rows.append(
                {
                    "queue": depth.queue,
                    "ready": depth.ready,
                    "delayed": depth.delayed,
                    "dead": depth.dead,
                    "dead_letters": [
                        {
                            "id": d.message_id,
                            "actor": d.actor,
                            "args": d.args,
                            "died_at": d.died_at,
                            "error": d.error,
                        }
                        for d in dead
                    ],
                }
            )
        return rows

    def project_rows(self) -> list[dict[str, Any]]:
        counters = self.store.counters()
        last_hooks = self.reconcile.last_webhooks()
        default_key = self.settings.plane_api_token.get_secret_value()
        rows = []
        for name, project in sorted(self.registry.projects.items()):
            state = self.reconcile.get(name)
            own = project.plane_api_token.get_secret_value() if project.plane_api_token else ""
            digest = key_digest(own) if own and own != default_key else ""
            rows.append(
                {
                    "name": name,
                    "plane_project_id": project.plane_project_id,
                    "repo": safe_url(project.repo),
                    "last_webhook": last_hooks.get(name),
                    "replays": counters.get(f"replays:{name}", 0),
                    "budget_remaining": self.store.plane_budget_remaining(digest),
                    "last_pass": state.last_pass_at or None,
                    "last_pass_calls": state.last_api_calls,
                    "last_error": state.last_error or None,
                    "webhooks_silent": state.webhooks_silent,
                }
            )
        return rows


def job_row(job: Job) -> dict[str, Any]:
    started = job.started_at or job.created_at
    return {
        "id": job.id,
        "stage": job.stage.value,
        "state": job.state.value,
        "attempt": job.attempt,
        "started_at": started.isoformat(),
    }


def safe_url(url: str | None) -> str | None:
    """A URL (or path) with any user:password part cut, for display."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
