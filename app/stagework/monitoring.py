"""Post-deploy monitoring: the health URL polled for the window; no automatic rollback."""

from __future__ import annotations

import html
import logging
import time

import httpx

from app.domain.models import Job, Task, utcnow
from app.domain.stages import Outcome
from app.projects import Project
from app.stagework.common import Context, StageResult

log = logging.getLogger(__name__)


def monitoring(ctx: Context, task: Task, job: Job, project: Project) -> StageResult:
    if not project.health_url:
        return StageResult(Outcome.SUCCESS, "no health URL configured: nothing to watch")
    started = task.monitor_started_at or utcnow()
    if task.monitor_started_at is None:
        ctx.store.update_task(task.id, monitor_started_at=started)
    failures, checks, last_error = 0, 0, ""
    end = started.timestamp() + project.health_window_s
    with httpx.Client(timeout=5.0) as http:
        while True:
            if ctx.should_stop():
                return StageResult(None, "monitoring stopped: task cancelled")
            checks += 1
            try:
                resp = http.get(project.health_url)
                healthy = 200 <= resp.status_code < 300
                last_error = "" if healthy else f"HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                healthy, last_error = False, f"{type(exc).__name__}: {exc}"
            if not healthy:
                failures += 1
                if failures >= project.health_failure_threshold:
                    return StageResult(
                        Outcome.FAILURE,
                        f"DEGRADED: {failures} failed health checks "
                        f"({last_error}); no automatic rollback",
                        comment=f"<p>⚠️ Post-deploy monitoring: DEGRADED — {failures} "
                        f"failed health checks of {html.escape(project.health_url)}"
                        f" ({html.escape(last_error)}). No automatic rollback."
                        "</p>",
                    )
            remaining = end - time.time()
            if remaining <= 0:
                break
            time.sleep(min(project.health_interval_s, remaining))
    return StageResult(
        Outcome.SUCCESS,
        f"HEALTHY: {checks} check(s), {failures} failure(s)",
        comment=f"<p>Post-deploy monitoring: HEALTHY ({checks} checks over "
        f"{project.health_window_s:.0f}s).</p>",
    )
