"""Bringing a task's branch up to date with the default branch, conflicts included.

`update_branch` merges `origin/<default>` into the task's worktree. A clean merge is
committed; a conflict is left in progress (the conflicting files marked) for the
developer agent, with the files and the conflict text as its feedback.
`finish_resolution` checks what the agent left — no unmerged path, no conflict marker
— and commits it; `abort_update` puts the worktree back as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.git import GitError, Repo, git

MARKERS = ("<<<<<<< ", ">>>>>>> ")


@dataclass(frozen=True)
class Conflict:
    files: list[str]
    text: str  # `git diff` of the conflicted merge (markers and both sides), trimmed

    def feedback(self, default_branch: str) -> str:
        return (
            f"Merging {default_branch} into this branch conflicts in: "
            f"{', '.join(self.files)}.\n"
            f"The merge is in progress in your working tree. Resolve every conflict "
            f"(keep {default_branch}'s changes and redo this work item's change on top), "
            f"leave no conflict markers; planeflow commits and pushes.\n\n{self.text}"
        )


def unmerged(path: Path) -> list[str]:
    return git(["diff", "--name-only", "--diff-filter=U"], path).stdout.split()


def update_branch(repo: Repo, path: Path) -> Conflict | None:
    """Merge the default branch into the worktree's branch; None when up to date or
    merged cleanly (committed), a Conflict when the merge stopped on one."""
    repo.fetch()
    with repo.locked():
        merged = git(
            ["merge", "--no-edit", "--quiet", f"origin/{repo.default_branch}"], path, check=False
        )
    if merged.returncode == 0:
        return None
    files = unmerged(path)
    if not files:
        raise GitError(f"git merge: {(merged.stderr or merged.stdout).strip()[-500:]}")
    text = git(["diff"], path).stdout
    return Conflict(files, text[-8000:])


def finish_resolution(repo: Repo, path: Path, message: str) -> str | None:
    """Commit the agent's resolution (a conflicted file it fixed but did not stage is
    staged); the reason it cannot be, or None when done."""
    with repo.locked():
        found = git(
            ["grep", "-n", "-I", "-e", f"^{MARKERS[0]}", "-e", f"^{MARKERS[1]}"],
            path,
            check=False,
        )
        if found.returncode == 0:
            where = sorted({line.split(":", 1)[0] for line in found.stdout.splitlines()})
            return f"conflict markers left in: {', '.join(where)}"
        git(["add", "-A"], path)
        left = unmerged(path)
        if left:
            return f"still conflicted: {', '.join(left)}"
        in_merge = git(["rev-parse", "-q", "--verify", "MERGE_HEAD"], path, check=False)
        staged = git(["diff", "--cached", "--quiet"], path, check=False).returncode != 0
        if in_merge.returncode == 0 or staged:
            git(["commit", "--quiet", "--no-edit", "-m", message], path)
    return None


def abort_update(path: Path) -> None:
    """Leave the worktree as it was before `update_branch` (an unresolved conflict)."""
    git(["merge", "--abort"], path, check=False)


def push_branch(repo: Repo, path: Path, branch: str) -> None:
    """Push the resolved branch (forced: the agent may have redone it on the default
    branch; planeflow owns task branches)."""
    with repo.locked():
        git(["push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{branch}"], path)
