"""Git, always through argv lists: one bare clone per repo, one worktree per task.

Layout under ORCH_REPOS_DIR: `<project>.git` (bare clone of the project's repo, with
remote-tracking branches), `<project>-worktrees/<task id>` (a task's branch), and
`<project>-worktrees/_merge-*` (short-lived worktrees for merges). Names that reach git
come from `app.domain.naming` (ASCII, '-' separated); nothing goes through a shell.

Jobs of one repository share its clone, so every git operation that touches the shared
repository (clone, fetch, worktree add/remove/prune, commit, push, merge) holds the
repository's lock: `flock` on `<project>.lock` beside the clone (so all worker processes
of the machine take turns) and, within a process, a re-entrant lock. It is never held
while an agent runs. A clone is made in a temporary directory and renamed into place;
a broken one (no HEAD, no origin) is made again.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.domain.errors import PlaneflowError

log = logging.getLogger(__name__)
# safe.directory: worktrees may belong to ORCH_AGENT_USER while the worker runs git.
IDENTITY = (
    "-c",
    "user.name=planeflow",
    "-c",
    "user.email=planeflow@localhost",
    "-c",
    "safe.directory=*",
)


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


_process_locks: dict[str, threading.RLock] = {}
_process_locks_guard = threading.Lock()
_held = threading.local()


@contextlib.contextmanager
def repo_lock(path: Path) -> Iterator[None]:
    """Hold the repository lock `path`: every process on the machine (flock) and every
    thread (RLock); re-entrant in one thread, so nested operations do not deadlock."""
    key = str(path)
    with _process_locks_guard:
        rlock = _process_locks.setdefault(key, threading.RLock())
    with rlock:
        depth: dict[str, int] = getattr(_held, "depth", None) or {}
        _held.depth = depth
        if depth.get(key, 0) == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(path, "a")  # noqa: SIM115 - closed below, after the unlock
            fcntl.flock(fh, fcntl.LOCK_EX)
            depth[key] = 1
            try:
                yield
            finally:
                depth[key] = 0
                fcntl.flock(fh, fcntl.LOCK_UN)
                fh.close()
        else:
            depth[key] += 1
            try:
                yield
            finally:
                depth[key] -= 1


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
        self.lock_path = repos_dir / f"{name}.lock"

    def locked(self) -> contextlib.AbstractContextManager[None]:
        return repo_lock(self.lock_path)

    def ensure_clone(self) -> None:
        with self.locked():
            if not self._clone_ok():
                self._clone()
            self.fetch()

    def _clone_ok(self) -> bool:
        if not (self.bare / "HEAD").exists():
            return False
        origin = git(["config", "--get", "remote.origin.url"], self.bare, check=False)
        if origin.returncode != 0 or not origin.stdout.strip():
            log.warning("clone %s has no origin: making it again", self.bare)
            return False
        return True

    def _clone(self) -> None:
        """Clone into a temporary directory, then rename it into place (never half-made)."""
        self.bare.parent.mkdir(parents=True, exist_ok=True)
        if self.bare.exists():
            shutil.rmtree(self.bare)
        tmp = self.bare.with_name(f".{self.bare.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            git(["clone", "--bare", "--quiet", self.url, str(tmp)])
            git(["config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*"], tmp)
            os.rename(tmp, self.bare)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def fetch(self) -> None:
        with self.locked():
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
        with self.locked():
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
        with self.locked():
            if not git(["status", "--porcelain"], path).stdout.strip():
                return False
            git(["add", "-A"], path)
            git(["commit", "--quiet", "-m", message], path)
            return True

    def push(self, path: Path, branch: str) -> None:
        with self.locked():
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
        with self.locked():
            return self._merge_branch(branch, message, push=push)

    def _merge_branch(self, branch: str, message: str, *, push: bool) -> MergeResult:
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
        with self.locked():
            return self._deploy_checkout()

    def _deploy_checkout(self) -> Path:
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
            with self.locked():
                if (self.bare / "HEAD").exists():
                    git(["worktree", "remove", "--force", str(path)], self.bare, check=False)
                shutil.rmtree(path, ignore_errors=True)
