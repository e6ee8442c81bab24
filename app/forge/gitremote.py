"""A forge that is any git remote (e.g. a local bare repo): the "PR" is the branch.

Mergeable means the branch merges cleanly into the default branch (tried in a scratch
worktree); merging pushes a merge commit to the default branch. No CI.
"""

from __future__ import annotations

from app.forge.base import MergeCheck, PullRequest
from app.git import MergeResult, Repo


class GitRemoteForge:
    def open_or_update(self, repo: Repo, branch: str, title: str, body: str) -> PullRequest:
        return PullRequest(url=f"{repo.url}#{branch}", branch=branch)

    def check(self, repo: Repo, pr: PullRequest) -> MergeCheck:
        trial = repo.merge_branch(pr.branch, "trial merge", push=False)
        return MergeCheck(
            mergeable=trial.ok, ci=None, head_sha=repo.remote_head(pr.branch), reason=trial.reason
        )

    def merge(self, repo: Repo, pr: PullRequest, message: str) -> MergeResult:
        return repo.merge_branch(pr.branch, message, push=True)
