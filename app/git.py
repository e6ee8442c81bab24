"""Git, always through argv lists: one bare clone per repo, one worktree per task.

Layout under ORCH_REPOS_DIR: `<project>.git` (bare clone of the project's repo, with
remote-tracking branches), `<project>-worktrees/<task id>` (a task's branch), and
`<project>-worktrees/_merge-*` (short-lived worktrees for merges). Names that reach git
come from `app.domain.naming` (ASCII, '-' separated); nothing goes through a shell.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.domain.errors import PlaneflowError

log = logging.getLogger(__name__)
IDENTITY = ("-c", "user.name=planeflow", "-c", "user.email=planeflow@localhost")


class GitError(PlaneflowError):
    """A git command failed; the message carries its stderr."""


def git(
    args: Sequence[str], cwd: Path | None = None, *, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["git", *IDENTITY, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None,
    )
    if check and proc.returncode != 0:
        raise GitError(f"git {' '.join(args[:3])}: {proc.stderr.strip()[-500:]}")
    return proc


@dataclass(frozen=True)
class MergeResult:
    ok: bool
    sha: str = ""
    reason: str = ""


class Repo:
    """A project's repository: its bare clone and the tasks' worktrees."""

    def __init__(self, repos_dir: Path, name: str, url: str, default_branch: str) -> None:
        self.url = url
        self.default_branch = default_branch
        self.bare = repos_dir / f"{name}.git"
        self.worktrees = repos_dir / f"{name}-worktrees"

    def ensure_clone(self) -> None:
        if not (self.bare / "HEAD").exists():
            self.bare.parent.mkdir(parents=True, exist_ok=True)
            git(["clone", "--bare", "--quiet", self.url, str(self.bare)])
            git(["config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*"], self.bare)
        self.fetch()

    def fetch(self) -> None:
        git(["fetch", "--quiet", "--prune", "origin"], self.bare)

    def has_remote_branch(self, branch: str) -> bool:
        return (
            git(
                ["rev-parse", "--verify", "--quiet", f"refs/remotes/origin/{branch}"],
                self.bare,
                check=False,
            ).returncode
            == 0
        )

    def worktree(self, task_id: str, branch: str) -> Path:
        """The task's worktree on `branch` (created from the remote branch or the default)."""
        self.ensure_clone()
        path = self.worktrees / task_id
        if (path / ".git").exists():
            return path
        self.worktrees.mkdir(parents=True, exist_ok=True)
        git(["worktree", "prune"], self.bare)
        start = (
            f"origin/{branch}"
            if self.has_remote_branch(branch)
            else f"origin/{self.default_branch}"
        )
        git(["worktree", "add", "--quiet", "-B", branch, str(path), start], self.bare)
        return path

    def commit_all(self, path: Path, message: str) -> bool:
        """Commit whatever the agent left uncommitted; False when there was nothing."""
        if not git(["status", "--porcelain"], path).stdout.strip():
            return False
        git(["add", "-A"], path)
        git(["commit", "--quiet", "-m", message], path)
        return True

    def push(self, path: Path, branch: str) -> None:
        git(["push", "--quiet", "origin", f"HEAD:refs/heads/{branch}"], path)

    def head(self, path: Path) -> str:
        return git(["rev-parse", "HEAD"], path).stdout.strip()

    def remote_head(self, branch: str) -> str | None:
        proc = git(
            ["rev-parse", "--verify", "--quiet", f"refs/remotes/origin/{branch}"],
            self.bare,
            check=False,
        )
        return proc.stdout.strip() or None

    def merge_branch(self, branch: str, message: str, *, push: bool) -> MergeResult:
        """Merge origin/<branch> into the default branch in a scratch worktree."""
        self.fetch()
        if not self.has_remote_branch(branch):
            return MergeResult(False, reason=f"branch {branch} is not on the remote")
        scratch = self.worktrees / f"_merge-{uuid.uuid4().hex[:8]}"
        self.worktrees.mkdir(parents=True, exist_ok=True)
        git(
            [
                "worktree",
                "add",
                "--quiet",
                "--detach",
                str(scratch),
                f"origin/{self.default_branch}",
            ],
            self.bare,
        )
        try:
            merged = git(
                ["merge", "--no-ff", "--quiet", "-m", message, f"origin/{branch}"],
                scratch,
                check=False,
            )
            if merged.returncode != 0:
                return MergeResult(
                    False,
                    reason="merge conflict with "
                    f"{self.default_branch}: {merged.stdout.strip()[-300:]}",
                )
            sha = self.head(scratch)
            if push:
                git(
                    ["push", "--quiet", "origin", f"HEAD:refs/heads/{self.default_branch}"], scratch
                )
                self.fetch()
            return MergeResult(True, sha=sha)
        finally:
            git(["worktree", "remove", "--force", str(scratch)], self.bare, check=False)

    def deploy_checkout(self) -> Path:
        """A worktree of the default branch as it is on the remote now."""
        self.ensure_clone()
        path = self.worktrees / "_deploy"
        if not (path / ".git").exists():
            self.worktrees.mkdir(parents=True, exist_ok=True)
            git(
                [
                    "worktree",
                    "add",
                    "--quiet",
                    "--detach",
                    str(path),
                    f"origin/{self.default_branch}",
                ],
                self.bare,
            )
        else:
            git(["checkout", "--quiet", "--detach", f"origin/{self.default_branch}"], path)
        return path

    def remove_worktree(self, task_id: str) -> None:
        path = self.worktrees / task_id
        if path.exists():
            if (self.bare / "HEAD").exists():
                git(["worktree", "remove", "--force", str(path)], self.bare, check=False)
            shutil.rmtree(path, ignore_errors=True)
