"""A fake Gitea: the pull-request and commit-status API subset GiteaForge uses, in memory.

Head shas are read from a local bare repository when one is attached to the fake repo
(so "gates passed on the current head" can be checked for real). `/_fake/status` sets
a commit status and, like Gitea, sends a signed `status` webhook; `/_fake/mergeable`
flips a pull request's mergeability.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web


@dataclass
class FakeRepo:
    full_name: str
    git_dir: Path | None = None
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)  # sha -> state

    def branch_sha(self, branch: str) -> str:
        if self.git_dir is None:
            return hashlib.sha1(branch.encode()).hexdigest()
        proc = subprocess.run(
            ["git", "-C", str(self.git_dir), "rev-parse", f"refs/heads/{branch}"],
            capture_output=True,
            text=True,
        )
        return proc.stdout.strip()


class FakeGitea:
    def __init__(
        self, token: str, *, webhook_url: str | None = None, webhook_secret: str = ""
    ) -> None:
        self.token = token
        self.repos: dict[str, FakeRepo] = {}
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.base_url = "http://gitea.invalid"
        self.merges: list[tuple[str, int]] = []
        self.default_state = ""  # the CI state of a commit nobody reported on

    def add_repo(self, full_name: str, git_dir: Path | None = None) -> FakeRepo:
        repo = FakeRepo(full_name, git_dir)
        self.repos[full_name] = repo
        return repo

    def render(self, repo: FakeRepo, pr: dict[str, Any]) -> dict[str, Any]:
        head_sha = repo.branch_sha(pr["head"])
        return {
            "number": pr["number"],
            "title": pr["title"],
            "body": pr["body"],
            "state": pr["state"],
            "merged": pr["merged"],
            "mergeable": pr["mergeable"],
            "html_url": f"{self.base_url}/{repo.full_name}/pulls/{pr['number']}",
            "head": {"ref": pr["head"], "sha": head_sha},
            "base": {"ref": pr["base"]},
        }

    async def send_webhook(self, event: str, payload: dict[str, Any]) -> None:
        if not self.webhook_url:
            return
        body = json.dumps(payload).encode()
        signature = hmac.new(self.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
        async with aiohttp.ClientSession() as session:
            await session.post(
                self.webhook_url,
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Gitea-Event": event,
                    "X-Gitea-Delivery": str(uuid.uuid4()),
                    "X-Gitea-Signature": signature,
                },
            )


FAKE = web.AppKey("fake_gitea", FakeGitea)


def _repo(request: web.Request) -> tuple[FakeGitea, FakeRepo]:
    fake = request.app[FAKE]
    if request.headers.get("Authorization") != f"token {fake.token}":
        raise web.HTTPUnauthorized(
            text='{"message":"token is required"}', content_type="application/json"
        )
    name = f"{request.match_info['owner']}/{request.match_info['repo']}"
    repo = fake.repos.get(name)
    if repo is None:
        raise web.HTTPNotFound(text='{"message":"repo not found"}', content_type="application/json")
    return fake, repo


async def pulls(request: web.Request) -> web.Response:
    fake, repo = _repo(request)
    if request.method == "POST":
        body = await request.json()
        if any(p["head"] == body["head"] and p["state"] == "open" for p in repo.pulls.values()):
            return web.json_response({"message": "pull request already exists"}, status=409)
        number = len(repo.pulls) + 1
        repo.pulls[number] = {
            "number": number,
            "title": body["title"],
            "body": body.get("body", ""),
            "head": body["head"],
            "base": body["base"],
            "state": "open",
            "merged": False,
            "mergeable": True,
        }
        return web.json_response(fake.render(repo, repo.pulls[number]), status=201)
    state = request.query.get("state", "open")
    return web.json_response(
        [fake.render(repo, p) for p in repo.pulls.values() if state == "all" or p["state"] == state]
    )


async def pull(request: web.Request) -> web.Response:
    fake, repo = _repo(request)
    pr = repo.pulls.get(int(request.match_info["number"]))
    if pr is None:
        return web.json_response({"message": "not found"}, status=404)
    if request.method == "PATCH":
        body = await request.json()
        pr.update({k: body[k] for k in ("title", "body") if k in body})
    return web.json_response(fake.render(repo, pr))


async def merge(request: web.Request) -> web.Response:
    fake, repo = _repo(request)
    pr = repo.pulls.get(int(request.match_info["number"]))
    if pr is None:
        return web.json_response({"message": "not found"}, status=404)
    if pr["merged"]:
        return web.json_response({"message": "already merged"}, status=405)
    if not pr["mergeable"]:
        return web.json_response({"message": "not mergeable"}, status=405)
    pr.update(merged=True, state="closed")
    fake.merges.append((repo.full_name, pr["number"]))
    return web.Response(status=200)


async def status(request: web.Request) -> web.Response:
    fake, repo = _repo(request)
    state = repo.statuses.get(request.match_info["sha"], fake.default_state)
    return web.json_response(
        {"state": state or "", "total_count": 1 if state else 0, "sha": request.match_info["sha"]}
    )


async def admin(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    body = await request.json()
    repo = fake.repos[body["repo"]]
    if request.match_info["action"] == "status":
        sha = body.get("sha") or repo.branch_sha(body["branch"])
        repo.statuses[sha] = body["state"]
        await fake.send_webhook(
            "status",
            {
                "sha": sha,
                "state": body["state"],
                "repository": {"full_name": repo.full_name},
                "branches": [{"name": body["branch"]}] if body.get("branch") else [],
            },
        )
        return web.json_response({"sha": sha})
    if request.match_info["action"] == "mergeable":
        repo.pulls[int(body["number"])]["mergeable"] = bool(body["mergeable"])
        return web.json_response({"ok": True})
    return web.json_response({"error": "unknown action"}, status=404)


def make_app(fake: FakeGitea) -> web.Application:
    app = web.Application()
    app[FAKE] = fake
    base = "/api/v1/repos/{owner}/{repo}"
    app.router.add_route("*", base + "/pulls", pulls)
    app.router.add_route("*", base + "/pulls/{number}", pull)
    app.router.add_post(base + "/pulls/{number}/merge", merge)
    app.router.add_get(base + "/commits/{sha}/status", status)
    app.router.add_post("/_fake/{action}", admin)
    return app
