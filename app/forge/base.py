"""The Forge protocol and what it answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from app.domain.errors import PlaneflowError
from app.git import MergeResult, Repo


class ForgeError(PlaneflowError):
    """A forge call failed (network, 5xx, unexpected answer)."""


@dataclass(frozen=True)
class PullRequest:
    url: str
    branch: str
    number: int | None = None


@dataclass(frozen=True)
class MergeCheck:
    mergeable: bool
    ci: str | None  # "success" | "pending" | "failure"; None: the forge has no CI
    head_sha: str | None
    merged: bool = False
    closed: bool = False
    reason: str = ""


class Forge(Protocol):
    def open_or_update(self, repo: Repo, branch: str, title: str, body: str) -> PullRequest: ...

    def check(self, repo: Repo, pr: PullRequest) -> MergeCheck: ...

    def merge(self, repo: Repo, pr: PullRequest, message: str) -> MergeResult: ...
