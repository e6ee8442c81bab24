"""Bringing a task branch up to date: clean merges, conflicts, and what a resolution must be."""

from __future__ import annotations

from pathlib import Path

from app.git import Repo, git
from app.git_update import abort_update, finish_resolution, push_branch, unmerged, update_branch
from tests.helpers import make_remote


def setup(tmp_path: Path) -> tuple[Repo, Path, Path]:
    """A task worktree whose CHANGES.md line conflicts with one pushed to main since."""
    remote = make_remote(tmp_path)
    repo = Repo(tmp_path / "repos", "demo", str(remote), "main")
    task = repo.worktree("t1", "feature/t1")
    (task / "CHANGES.md").write_text("- t1\n")
    repo.commit_all(task, "t1")
    repo.push(task, "feature/t1")
    other = repo.worktree("t2", "feature/t2")
    (other / "CHANGES.md").write_text("- t2\n")
    repo.commit_all(other, "t2")
    git(["push", "--quiet", "origin", "HEAD:refs/heads/main"], other)
    return repo, task, other


def test_a_conflict_is_left_in_progress_with_its_files(tmp_path: Path) -> None:
    repo, task, _ = setup(tmp_path)
    conflict = update_branch(repo, task)
    assert conflict is not None and conflict.files == ["CHANGES.md"]
    assert "<<<<<<<" in conflict.text and "CHANGES.md" in conflict.feedback("main")
    assert unmerged(task) == ["CHANGES.md"]
    abort_update(task)
    assert unmerged(task) == [] and (task / "CHANGES.md").read_text() == "- t1\n"


def test_a_resolution_with_markers_left_is_refused(tmp_path: Path) -> None:
    repo, task, _ = setup(tmp_path)
    update_branch(repo, task)
    git(["add", "CHANGES.md"], task)  # "resolved" without touching the markers
    reason = finish_resolution(repo, task, "merge main")
    assert reason is not None and "conflict markers left in: CHANGES.md" in reason


def test_a_resolution_is_committed_and_pushed(tmp_path: Path) -> None:
    repo, task, _ = setup(tmp_path)
    update_branch(repo, task)
    (task / "CHANGES.md").write_text("- t2\n- t1\n")
    assert finish_resolution(repo, task, "merge main") is None
    push_branch(repo, task, "feature/t1")
    repo.fetch()
    assert repo.merge_branch("feature/t1", "merge t1", push=True).ok  # now it merges cleanly
    shown = git(["show", "origin/main:CHANGES.md"], repo.bare).stdout
    assert shown == "- t2\n- t1\n"


def test_an_up_to_date_branch_needs_nothing(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    repo = Repo(tmp_path / "repos", "demo", str(remote), "main")
    task = repo.worktree("t1", "feature/t1")
    assert update_branch(repo, task) is None
