"""GiteaForge against the in-repo fake Gitea over real HTTP."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.forge.base import ForgeError, PullRequest
from app.forge.gitea import GiteaForge
from app.git import Repo
from app.sandbox.gitea import FakeGitea, make_app
from tests.helpers import ServedApp, make_remote


@pytest.fixture
def gitea(tmp_path: Path) -> Iterator[tuple[FakeGitea, ServedApp, Repo]]:
    remote = make_remote(tmp_path)
    subprocess.run(["git", "-C", str(remote), "branch", "feature/X-1-a", "main"], check=True)
    fake = FakeGitea("t0ken")
    fake.add_repo("acme/demo", remote)
    served = ServedApp(make_app(fake))
    fake.base_url = served.url
    yield fake, served, Repo(tmp_path / "repos", "demo", str(remote), "main")
    served.stop()


def test_open_then_update_the_same_pull_request(gitea: tuple[FakeGitea, ServedApp, Repo]) -> None:
    fake, served, repo = gitea
    forge = GiteaForge(served.url, "t0ken", "acme/demo")
    first = forge.open_or_update(repo, "feature/X-1-a", "X-1: a", "body")
    again = forge.open_or_update(repo, "feature/X-1-a", "X-1: a (v2)", "body 2")
    assert first.number == again.number == 1
    assert fake.repos["acme/demo"].pulls[1]["title"] == "X-1: a (v2)"
    assert first.url.endswith("/acme/demo/pulls/1")


def test_check_reads_mergeability_head_and_ci(gitea: tuple[FakeGitea, ServedApp, Repo]) -> None:
    fake, served, repo = gitea
    forge = GiteaForge(served.url, "t0ken", "acme/demo")
    pr = forge.open_or_update(repo, "feature/X-1-a", "t", "b")
    check = forge.check(repo, pr)
    assert check.mergeable and check.ci == "success" and check.head_sha
    assert check.head_sha == fake.repos["acme/demo"].branch_sha("feature/X-1-a")
    fake.repos["acme/demo"].statuses[check.head_sha] = "pending"
    assert forge.check(repo, pr).ci == "pending"
    fake.repos["acme/demo"].statuses[check.head_sha] = "failure"
    assert forge.check(repo, pr).ci == "failure"


def test_merge_and_refusal(gitea: tuple[FakeGitea, ServedApp, Repo]) -> None:
    fake, served, repo = gitea
    forge = GiteaForge(served.url, "t0ken", "acme/demo")
    pr = forge.open_or_update(repo, "feature/X-1-a", "t", "b")
    httpx.post(
        served.url + "/_fake/mergeable", json={"repo": "acme/demo", "number": 1, "mergeable": False}
    )
    refused = forge.merge(repo, pr, "merge")
    assert not refused.ok and "405" in refused.reason
    httpx.post(
        served.url + "/_fake/mergeable", json={"repo": "acme/demo", "number": 1, "mergeable": True}
    )
    assert forge.merge(repo, pr, "merge").ok
    assert forge.check(repo, pr).merged
    assert fake.merges == [("acme/demo", 1)]


def test_wrong_token_and_unreachable_server_are_forge_errors(
    gitea: tuple[FakeGitea, ServedApp, Repo],
) -> None:
    _, served, repo = gitea
    with pytest.raises(ForgeError, match="401"):
        GiteaForge(served.url, "wrong", "acme/demo").check(repo, PullRequest("", "b", 1))
    with pytest.raises(ForgeError):
        GiteaForge("http://127.0.0.1:9", "t0ken", "acme/demo", timeout_s=1).check(
            repo, PullRequest("", "b", 1)
        )
