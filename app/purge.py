"""Removing what finished long ago: `planeflow purge --older-than 30d` and the retention
setting (`ORCH_RETENTION_DAYS`, swept with each `reconcile_all`).

Done and cancelled tasks last changed before the cutoff lose their Redis keys (hash,
timeline, jobs, outbox leftovers, anti-dup index; a tombstone stays so a late delivery
or a replay never starts the work item again), their job directories and any worktree
left under `ORCH_REPOS_DIR`.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from app.domain.errors import ConfigError
from app.domain.models import utcnow
from app.store import Store

log = logging.getLogger(__name__)
UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


@dataclass
class PurgeReport:
    tasks: list[str] = field(default_factory=list)  # work item ids
    jobs: int = 0
    directories: int = 0

    def summary(self) -> str:
        return (
            f"{len(self.tasks)} task(s), {self.jobs} job(s), {self.directories} "
            f"directory(ies)" + (f": {', '.join(self.tasks[:20])}" if self.tasks else "")
        )


def parse_age(text: str) -> float:
    """`30d`, `12h`, `90m`, `3600s` (a bare number is days) -> seconds."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhms]?)\s*", text)
    if found is None:
        raise ConfigError(f"--older-than {text!r}: expected e.g. 30d, 12h, 90m")
    return float(found.group(1)) * UNITS[found.group(2) or "d"]


def purge(
    store: Store, repos_dir: Path, older_than_s: float, *, dry_run: bool = False
) -> PurgeReport:
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    tasks = store.finished_before(cutoff)
    jobs = store.jobs_of({t.id for t in tasks}) if tasks else {}
    report = PurgeReport([t.work_item_id for t in tasks], sum(len(j) for j in jobs.values()))
    if dry_run:
        return report
    for task in tasks:
        store.purge_task(task, jobs.get(task.id, []))
        leftovers = [repos_dir / "jobs" / j for j in jobs.get(task.id, [])]
        leftovers += list(repos_dir.glob(f"*-worktrees/{task.id}"))
        for path in leftovers:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                report.directories += 1
    if tasks:
        log.info("purged %s", report.summary())
    return report
