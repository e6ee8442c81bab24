"""Gitea over its REST API (token auth): pull requests, mergeability, commit status, merge."""

from __future__ import annotations

from typing import Any

import httpx

from app.forge.base import ForgeError, MergeCheck, PullRequest
from app.git import MergeResult, Repo


class GiteaForge:
    def __init__(
        self,
        base_url: str,
        token: str,
        repo_full_name: str,
        *,
        timeout_s: float = 15.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.repo_path = f"/api/v1/repos/{repo_full_name}"
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout_s,
            transport=transport,
            headers={"Authorization": f"token {token}", "Accept": "application/json"},
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, self.repo_path + path, **kwargs)
        except httpx.TransportError as exc:
            raise ForgeError(f"gitea {method} {path}: {exc}") from exc
        if resp.status_code >= 500:
            raise ForgeError(f"gitea {method} {path}: server error {resp.status_code}")
        return resp

    def _json(self, resp: httpx.Response, what: str) -> Any:
        if resp.status_code >= 400:
            raise ForgeError(f"gitea {what}: {resp.status_code} {resp.text[:200]}")
        try:
            return resp.json()
        except ValueError as exc:
            raise ForgeError(f"gitea {what}: answer is not JSON") from exc

    def _find(self, branch: str) -> dict[str, Any] | None:
        pulls = self._json(
            self._call("GET", "/pulls", params={"state": "open", "limit": 50}), "list pulls"
        )
        return next((p for p in pulls if p.get("head", {}).get("ref") == branch), None)

    def open_or_update(self, repo: Repo, branch: str, title: str, body: str) -> PullRequest:
        existing = self._find(branch)
        if existing is None:
            data = self._json(
                self._call(
                    "POST",
                    "/pulls",
                    json={
                        "title": title,
                        "body": body,
                        "head": branch,
                        "base": repo.default_branch,
                    },
                ),
                "create pull",
            )
        else:
            data = self._json(
                self._call(
                    "PATCH", f"/pulls/{existing['number']}", json={"title": title, "body": body}
                ),
                "update pull",
            )
        return PullRequest(url=str(data["html_url"]), branch=branch, number=int(data["number"]))

    def check(self, repo: Repo, pr: PullRequest) -> MergeCheck:
        data = self._json(self._call("GET", f"/pulls/{pr.number}"), "get pull")
        sha = data.get("head", {}).get("sha")
        ci: str | None = None
        if sha:
            status = self._json(self._call("GET", f"/commits/{sha}/status"), "commit status")
            state = status.get("state") or ""
            ci = {"success": "success", "pending": "pending", "": "success"}.get(state, "failure")
            if not status.get("total_count"):
                ci = "success"  # no CI configured on this repo: nothing to wait for
        return MergeCheck(
            mergeable=bool(data.get("mergeable")),
            ci=ci,
            head_sha=sha,
            merged=bool(data.get("merged")),
            closed=data.get("state") == "closed" and not data.get("merged"),
        )

    def merge(self, repo: Repo, pr: PullRequest, message: str) -> MergeResult:
        resp = self._call(
            "POST",
            f"/pulls/{pr.number}/merge",
            json={"Do": "merge", "merge_message_field": message},
        )
        if resp.status_code in (200, 204):
            check = self.check(repo, pr)
            return MergeResult(True, sha=check.head_sha or "")
        return MergeResult(
            False, reason=f"gitea refused the merge: {resp.status_code} {resp.text[:200]}"
        )
