"""Jobs of one repository share its clone: concurrent git work never trips over itself."""

from __future__ import annotations

import multiprocessing
import subprocess
from pathlib import Path

from app.git import Repo, git
from tests.helpers import make_remote

RUNS, JOBS = 10, 4


def one_job(repos_dir: str, remote: str, n: int) -> str:
    """What a job does with git around its agent: worktree, commit, push. '' or the error."""
    try:
        repo = Repo(Path(repos_dir), "demo", remote, "main")
        path = repo.worktree(str(n), f"feature/DEMO-{n}-x")
        (path / f"change-{n}.txt").write_text(f"job {n}\n")
        repo.commit_all(path, f"DEMO-{n}: development")
        repo.push(path, f"feature/DEMO-{n}-x")
        return ""
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def test_four_jobs_at_once_on_an_empty_repos_dir_ten_times(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    # spawn, not fork: a fork of this many-threaded test process can inherit a held lock
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(JOBS) as pool:
        for run in range(RUNS):
            repos_dir = tmp_path / f"repos-{run}"
            jobs = [(str(repos_dir), str(remote), n) for n in range(JOBS)]
            errors = pool.starmap_async(one_job, jobs).get(timeout=120)
            assert errors == [""] * JOBS, f"run {run}: {errors}"
            origin = git(["config", "--get", "remote.origin.url"], repos_dir / "demo.git")
            assert origin.stdout.strip() == str(remote)
    branches = git(["branch", "--list", "feature/*"], remote).stdout.split()
    assert len(branches) == JOBS


def test_a_broken_clone_is_made_again(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    repo = Repo(tmp_path / "repos", "demo", str(remote), "main")
    repo.ensure_clone()
    subprocess.run(["git", "config", "--unset", "remote.origin.url"], cwd=repo.bare, check=True)
    path = repo.worktree("1", "feature/DEMO-1-x")  # would fail on a clone without origin
    assert (path / "README.md").exists()
    assert git(["config", "--get", "remote.origin.url"], repo.bare).stdout.strip() == str(remote)
