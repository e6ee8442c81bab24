"""The sandbox Plane's server-side state: the world, the webhook sender, the per-key
rate limiter (429 with Retry-After, as real Plane) and fault injection."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Any

from aiohttp import web

from app.sandbox import plane_render as render
from app.sandbox.plane_webhooks import Delivery, WebhookSender
from app.sandbox.plane_world import Project, SandboxError, User, World


class SandboxPlane:
    """World + webhook sender + rate limiter + fault injection, served by `make_app`."""

    def __init__(
        self,
        world: World,
        *,
        rate_limit: int | None = 60,
        sender: WebhookSender | None = None,
        rate_window_s: float = 60.0,
    ) -> None:
        self.world = world
        self.lock = threading.RLock()
        self.rate_limit = rate_limit
        self.rate_window_s = rate_window_s  # Plane's is a minute; tests compress it
        self.sender = sender or WebhookSender()
        # project id, work item id or "*" -> "500" | "404" | "garbage" | "slow:S" | "lose_answer"
        self.faults: dict[str, str] = {}
        self.request_log: list[tuple[str, str]] = []
        self.refused: dict[str, int] = {}  # 429s answered, per API key
        self._hits: dict[str, deque[float]] = {}
        world.on_event = self._on_event
        self.human_key: str | None = None

    # -- webhooks ---------------------------------------------------------------------
    def _on_event(self, event: str, action: str, p: dict[str, Any]) -> None:
        world = self.world
        actor: User = p["actor"]
        project: Project = p["project"]

        def build() -> dict[str, Any]:
            with self.lock:
                if event == "issue":
                    data = render.render_item_webhook(world, project, p["item"])
                elif event == "issue_comment":
                    data = render.render_comment(world, project, p["comment"])
                else:
                    data = render.render_project(world, project)
                return {
                    "event": event,
                    "action": action,
                    "webhook_id": self.sender.webhook_id,
                    "workspace_id": world.workspace_id,
                    "data": data,
                    "activity": {
                        "field": p.get("field"),
                        "new_value": p.get("new"),
                        "old_value": p.get("old"),
                        "actor": actor.render(),
                        "old_identifier": None,
                        "new_identifier": None,
                    },
                }

        self.sender.enqueue(Delivery(event, action, build, field_name=p.get("field")))

    # -- rate limit -------------------------------------------------------------------
    def check_rate(self, key: str) -> dict[str, str]:
        """Count one request; raise 429 past the limit; return the rate headers.

        As Plane 1.3.1: a sliding window per key; `X-RateLimit-Reset` is a window from
        now (recordings: the answer's time + 61 s), `Retry-After` when the oldest
        request of the window leaves it.
        """
        if self.rate_limit is None:
            return {}
        now = time.time()
        window = self.rate_window_s
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - window:
            hits.popleft()
        if len(hits) >= self.rate_limit:
            retry = max(math.ceil(hits[0] + window - now), 1)
            self.refused[key] = self.refused.get(key, 0) + 1
            raise SandboxError(
                429,
                {"error_code": 5900, "error_message": "RATE_LIMIT_EXCEEDED"},
            ) from _RetryAfter(retry)
        hits.append(now)
        return {
            "X-RateLimit-Remaining": str(self.rate_limit - len(hits)),
            "X-RateLimit-Reset": str(int(now + window) + 1),
        }

    def info(self) -> dict[str, Any]:
        """What `/_sandbox/info` shows: the workspace, its projects and states."""
        world = self.world
        return {
            "workspace": world.slug,
            "projects": [
                {
                    "id": p.id,
                    "identifier": p.identifier,
                    "name": p.name,
                    "states": {s.name: s.id for s in p.states.values()},
                    "items": len(p.items),
                }
                for p in world.projects.values()
            ],
            "webhook_url": self.sender.url,
        }


SANDBOX = web.AppKey("sandbox", SandboxPlane)


class _RetryAfter(Exception):
    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
