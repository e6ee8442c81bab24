"""What every stage's work shares: its result, its context, output helpers."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.config import Settings
from app.domain.stages import Outcome, Stage
from app.forge.base import Forge
from app.git import Repo
from app.plane.client import PlaneClient
from app.projects import Project
from app.store import Store

log = logging.getLogger(__name__)

ROLE_OF_STAGE = {
    Stage.ANALYSIS: "analyst",
    Stage.DEVELOPMENT: "developer",
    Stage.REVIEW: "reviewer",
}


@dataclass
class StageResult:
    outcome: Outcome | None  # None: no transition (waiting for a human, CI, a slot)
    message: str
    retry: bool = False  # a failure worth another attempt (exit 75, agent failure)
    wait_s: float | None = None  # run this same job again after this delay
    fields: dict[str, Any] = field(default_factory=dict)  # task fields to set
    # This milestone's note (HTML), kept for the task's next digest comment; with
    # `post`, the digest is posted now with this as its lead (ready for review).
    comment: str | None = None
    post: bool = False


@dataclass
class Context:
    settings: Settings
    store: Store
    plane: PlaneClient
    forge_for: Callable[[Project], Forge]
    should_stop: Callable[[], bool] = lambda: False

    def repo(self, project: Project) -> Repo:
        return Repo(self.settings.repos_dir, project.name, project.repo, project.default_branch)


def tail(text: str, limit: int = 3000) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


def pre(text: str) -> str:
    return f"<pre>{html.escape(tail(text))}</pre>"
