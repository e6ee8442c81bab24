"""The webhook receiver: aiohttp app factory and routes.

`POST /webhooks/plane` and `/webhooks/gitea` verify the signature over the raw body,
validate the shape and hand the event to `Ingest` (dedup, `pf:events`, queue; the
local spool when Redis is down). `/healthz` says the process is alive, `/readyz`
that Redis answers, `/metrics` is Prometheus text. Ingest runs in the default
executor: it uses the same synchronous Redis client and broker as the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from app.config import Settings
from app.ingest import PROCESS, Answer, Ingest
from app.metrics import SharedCounters, WebMetrics
from app.plane.models import WebhookBody
from app.plane.webhooks import body_sha256, verify
from app.projects import Registry
from app.queue import EVENTS_QUEUE, PROCESS_EVENT, PROCESS_FORGE_EVENT, Dispatcher
from app.spool import Spool

log = logging.getLogger(__name__)


@dataclass
class Receiver:
    settings: Settings
    registry: Registry
    ingest: Ingest
    metrics: WebMetrics
    redis: Any


RECEIVER = web.AppKey("receiver", Receiver)


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def read_body(request: web.Request, limit: int) -> bytes | None:
    """The raw body, or None when it is over `limit` bytes."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = await request.content.read(limit + 1)
    return None if len(body) > limit else body


async def _store(request: web.Request, entry: dict[str, Any]) -> web.Response:
    receiver = request.app[RECEIVER]
    loop = asyncio.get_running_loop()
    answer: Answer = await loop.run_in_executor(None, receiver.ingest.accept, entry)
    return web.json_response(answer.body, status=answer.status)


def _entry(
    source: str, event: str, request: web.Request, body: bytes, **fields: Any
) -> dict[str, Any]:
    return {
        "source": source,
        "event": event,
        "sha256": body_sha256(body),
        "received_at": datetime.now(UTC).isoformat(),
        "body": body.decode("utf-8", errors="replace"),
        **fields,
    }


async def plane_webhook(request: web.Request) -> web.Response:
    receiver = request.app[RECEIVER]
    body = await read_body(request, receiver.settings.webhook_max_body)
    if body is None:
        receiver.metrics.count("plane", "too_large")
        return error(413, f"body over {receiver.settings.webhook_max_body} bytes")
    try:
        raw = json.loads(body)
    except ValueError:
        raw = None
    data = raw.get("data") if isinstance(raw, dict) else None
    project_id = data.get("project") if isinstance(data, dict) else None
    project = receiver.registry.by_plane_id(project_id) if isinstance(project_id, str) else None
    secret = (
        project.webhook_secret
        if project and project.webhook_secret
        else receiver.settings.plane_webhook_secret
    )
    if not verify(secret.get_secret_value(), body, request.headers.get("X-Plane-Signature")):
        receiver.metrics.count("plane", "bad_signature")
        log.warning(
            "plane webhook: bad or missing signature (delivery %s)",
            request.headers.get("X-Plane-Delivery", "-"),
        )
        return error(401, "invalid signature")
    if raw is None:
        receiver.metrics.count("plane", "bad_json")
        return error(400, "body is not JSON")
    try:
        hook = WebhookBody.model_validate(raw)
    except ValidationError as exc:
        receiver.metrics.count("plane", "bad_shape")
        first = exc.errors()[0]
        return error(
            400, f"unexpected webhook shape: {'.'.join(map(str, first['loc']))}: {first['msg']}"
        )
    issue_id = hook.issue_id
    if project is None:
        outcome = "unknown_project"
        log.info(
            "plane webhook for unknown project %s acknowledged, not processed", hook.project_id
        )
    elif issue_id and hook.event == "issue" and (hook.is_state_change or hook.action == "created"):
        outcome = PROCESS
    else:
        outcome = f"ignored: {hook.event}/{hook.action}/{hook.activity.field or '-'}"
    actor = hook.activity.actor.id if hook.activity.actor else ""
    payload = {
        "project_id": hook.project_id,
        "issue_id": issue_id,
        "event": hook.event,
        "action": hook.action,
        "field": hook.activity.field,
        "actor_id": actor,
    }
    entry = _entry(
        "plane",
        hook.event,
        request,
        body,
        action=hook.action,
        field=hook.activity.field,
        project=project.name if project else project_id,
        issue=issue_id,
        actor=actor,
        outcome=outcome,
        delivery=request.headers.get("X-Plane-Delivery", ""),
        queue=EVENTS_QUEUE,
        actor_name=PROCESS_EVENT,
        payload=payload,
    )
    return await _store(request, entry)


async def gitea_webhook(request: web.Request) -> web.Response:
    receiver = request.app[RECEIVER]
    body = await read_body(request, receiver.settings.webhook_max_body)
    if body is None:
        receiver.metrics.count("gitea", "too_large")
        return error(413, f"body over {receiver.settings.webhook_max_body} bytes")
    secret = receiver.settings.gitea_webhook_secret.get_secret_value()
    if not verify(secret, body, request.headers.get("X-Gitea-Signature")):
        receiver.metrics.count("gitea", "bad_signature")
        return error(401, "invalid signature")
    try:
        raw = json.loads(body)
    except ValueError:
        raw = None
    repo = raw.get("repository") if isinstance(raw, dict) else None
    if not isinstance(repo, dict) or not isinstance(repo.get("full_name"), str):
        receiver.metrics.count("gitea", "bad_shape")
        return error(400, "expected a Gitea webhook with repository.full_name")
    event = request.headers.get("X-Gitea-Event", "")
    project = next(
        (p for p in receiver.registry.projects.values() if p.gitea_repo == repo["full_name"]), None
    )
    if project is None:
        outcome = "unknown_project"
    elif event in ("pull_request", "status"):
        outcome = PROCESS
    else:
        outcome = f"ignored: {event}"
    payload = {
        "project": project.name if project else None,
        "event": event,
        "repo": repo["full_name"],
        "branches": gitea_branches(raw),
    }
    entry = _entry(
        "gitea",
        event,
        request,
        body,
        action=str(raw.get("action", "")),
        project=project.name if project else repo["full_name"],
        outcome=outcome,
        delivery=request.headers.get("X-Gitea-Delivery", ""),
        queue=EVENTS_QUEUE,
        actor_name=PROCESS_FORGE_EVENT,
        payload=payload,
    )
    return await _store(request, entry)


def gitea_branches(raw: dict[str, Any]) -> list[str]:
    """The branches a Gitea event is about (a pull request's head, or a status's branches)."""
    pull = raw.get("pull_request")
    if isinstance(pull, dict) and isinstance(pull.get("head"), dict):
        ref = pull["head"].get("ref")
        return [ref] if isinstance(ref, str) else []
    branches = raw.get("branches")
    if isinstance(branches, list):
        return [
            b["name"] for b in branches if isinstance(b, dict) and isinstance(b.get("name"), str)
        ]
    return []


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    receiver = request.app[RECEIVER]
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, receiver.redis.ping)
    except Exception as exc:
        pending = await loop.run_in_executor(None, receiver.ingest.spool.pending)
        return web.json_response(
            {"status": "redis unreachable", "error": str(exc), "spooled": pending}, status=503
        )
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    receiver = request.app[RECEIVER]
    loop = asyncio.get_running_loop()
    pending = await loop.run_in_executor(None, receiver.ingest.spool.pending)
    receiver.metrics.spool_pending.set(pending)
    text = await loop.run_in_executor(None, generate_latest, receiver.metrics.registry)
    return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def drain_spool_forever(receiver: Receiver, interval_s: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            if await loop.run_in_executor(None, receiver.ingest.spool.files):
                drained = await loop.run_in_executor(None, receiver.ingest.drain)
                if drained:
                    log.info("spool: %d event(s) moved into Redis", drained)
        except Exception:
            log.exception("spool drain failed; will retry")
        await asyncio.sleep(interval_s)


def create_app(
    settings: Settings,
    *,
    registry: Registry,
    redis_client: Any,
    dispatcher: Dispatcher,
    drain_interval_s: float = 1.0,
) -> web.Application:
    """The receiver app. Callers own the Redis client and the broker behind `dispatcher`."""
    web_metrics = WebMetrics()
    web_metrics.registry.register(
        SharedCounters(redis_client, settings.keys.counters, settings.keys.webhooks_last)
    )
    ingest = Ingest(
        redis_client,
        settings.keys,
        dispatcher,
        Spool(settings.spool_dir),
        events_maxlen=settings.events_maxlen,
        delivery_ttl_s=settings.delivery_ttl_s,
        count=web_metrics.count,
    )
    receiver = Receiver(settings, registry, ingest, web_metrics, redis_client)
    app = web.Application(client_max_size=settings.webhook_max_body + 1024)
    app[RECEIVER] = receiver
    app.router.add_post("/webhooks/plane", plane_webhook)
    app.router.add_post("/webhooks/gitea", gitea_webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)

    async def spool_drainer(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(drain_spool_forever(receiver, drain_interval_s))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(spool_drainer)
    return app
