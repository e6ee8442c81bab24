"""The webhook receiver: aiohttp app factory and routes.

`POST /webhooks/plane` and `/webhooks/gitea` read the whole body, verify its signature
on the raw bytes, parse and classify it (`app.intake`) and hand the event to `Ingest`
(group commit into Redis, or the spool). `/healthz` says the process is alive, `/readyz`
that Redis answers, `/metrics` is Prometheus text; `/` is the operator's dashboard
(`app.dashboard`) where it may be served. No request is answered 500: an
unexpected failure is logged with its traceback and answered 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app import dashboard
from app.config import Settings
from app.ingest import REDIS_ERRORS, Ingest, connect_async
from app.ingest_event import Event
from app.intake import GiteaIntake, PlaneIntake, Refused, read_body
from app.metrics import PipelineMetrics, SharedCounters, SharedScrape, WebMetrics
from app.projects import Registry
from app.services import Services
from app.spool import Spool

log = logging.getLogger(__name__)

AsyncRedisFactory = Callable[[], aioredis.Redis]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Receiver:
    settings: Settings
    plane: PlaneIntake
    gitea: GiteaIntake
    metrics: WebMetrics
    spool: Spool
    shared: SharedScrape
    ingest: Ingest | None = None  # made at startup, on the serving loop


RECEIVER = web.AppKey("receiver", Receiver)
JSON = {"Content-Type": "application/json"}  # as headers: a third cheaper than content_type=
DASHBOARD_NOTE = web.AppKey("dashboard_note", str)  # whether and how it is served


def error(status: int, message: str, *, close: bool = False) -> web.Response:
    resp = web.json_response({"error": message}, status=status)
    if close:
        resp.force_close()  # the rest of the body is not read: the connection is unusable
    return resp


async def _webhook(
    request: web.Request, source: str, classify: Callable[[bytes, Any], Event]
) -> web.Response:
    receiver = request.app[RECEIVER]
    try:
        body = await read_body(
            request, receiver.settings.webhook_max_body, receiver.settings.webhook_read_idle_s
        )
        event = classify(body, request.headers)
    except Refused as refused:
        receiver.metrics.count(source, refused.outcome)
        # 401: a sender with the wrong secret, or not Plane at all (a warning); 400, 408,
        # 413: a signed sender's malformed, slow or oversized request (worth seeing too)
        log.log(
            logging.WARNING if refused.status == 401 else logging.INFO,
            "%s webhook refused %d: %s (delivery %r)",
            source,
            refused.status,
            refused.message,
            request.headers.get("X-Plane-Delivery", "-")[:80],
        )
        return error(refused.status, refused.message, close=refused.close)
    except Exception:  # a bug must not become a 500 (nor a lost event: Plane may retry)
        log.exception("%s webhook: unexpected failure before storing", source)
        return error(503, "the event could not be read; it was not accepted")
    if event.outcome == "unknown_project":
        log.info(
            "%s webhook for unknown project %r acknowledged, not processed",
            source,
            event.project,
        )
    assert receiver.ingest is not None
    try:
        answer = await receiver.ingest.accept(event)
    except Exception:  # neither Redis nor the spool could take it (logged by Ingest)
        return error(503, "the event could not be stored; it was not accepted")
    return web.Response(body=answer.body, status=answer.status, headers=JSON)


async def plane_webhook(request: web.Request) -> web.Response:
    return await _webhook(request, "plane", request.app[RECEIVER].plane.event)


async def gitea_webhook(request: web.Request) -> web.Response:
    return await _webhook(request, "gitea", request.app[RECEIVER].gitea.event)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    receiver = request.app[RECEIVER]
    assert receiver.ingest is not None
    try:
        async with asyncio.timeout(2):
            await receiver.ingest.r.ping()
    except REDIS_ERRORS as exc:
        loop = asyncio.get_running_loop()
        pending = await loop.run_in_executor(None, receiver.spool.pending)
        return web.json_response(
            {
                "status": "redis unreachable",
                "error": str(exc) or type(exc).__name__,
                "spooled": pending,
            },
            status=503,
        )
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """This process's metrics, and those read from Redis when Redis answers in time
    (`planeflow_metrics_redis_up` says which): a hung Redis never holds a scrape."""
    receiver = request.app[RECEIVER]
    loop = asyncio.get_running_loop()
    pending = await loop.run_in_executor(None, receiver.spool.pending)
    receiver.metrics.spool_pending.set(pending)
    shared = await receiver.shared.text()
    receiver.metrics.shared_up.set(0 if shared is None else 1)
    text = generate_latest(receiver.metrics.registry)  # in-process values only: no I/O
    return web.Response(body=text + (shared or b""), headers={"Content-Type": CONTENT_TYPE_LATEST})


def never_500(handler: Handler) -> Handler:
    """Outside the webhook routes (which answer their own failures), an unexpected
    failure is logged with its traceback and answered 503, never 500. A wrapper per
    route, not a middleware: the webhook path pays nothing for it."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (web.HTTPException, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("%s %s failed unexpectedly", request.method, request.path)
            return error(503, "internal error (logged)")

    return guarded


def create_app(
    settings: Settings,
    *,
    registry: Registry,
    redis_client: Any,
    aredis: AsyncRedisFactory | None = None,
    drain_interval_s: float = 1.0,
    listen_host: str | None = None,
    services: Services | None = None,
) -> web.Application:
    """The receiver app, with the dashboard where it may be served (`app.dashboard`).

    `redis_client` (synchronous) serves the shared counters on /metrics and the
    dashboard's reads; the ingest path uses its own `redis.asyncio` client, made on the
    serving loop by `aredis` (default: from `settings.redis_url`, with short timeouts)
    and closed with the app. `listen_host`: where the app will listen (None: a test).
    """
    shared = SharedScrape()
    shared.registry.register(
        SharedCounters(redis_client, settings.keys.counters, settings.keys.webhooks_last)
    )
    shared.registry.register(PipelineMetrics(redis_client, settings.keys))
    receiver = Receiver(
        settings,
        PlaneIntake(registry, settings.plane_webhook_secret.get_secret_value(), settings.keys),
        GiteaIntake(registry, settings.gitea_webhook_secret.get_secret_value(), settings.keys),
        WebMetrics(),
        Spool(settings.spool_dir),
        shared,
    )
    # The body is read by `read_body` (with its own limit); this bounds only aiohttp's.
    # Bodies are never decompressed: the signature is of the bytes as sent, and a
    # compressed body that is not is refused (401) without being decoded first.
    app = web.Application(
        client_max_size=settings.webhook_max_body + 1024,
        handler_args={"auto_decompress": False},
    )
    app[RECEIVER] = receiver
    app.router.add_post("/webhooks/plane", plane_webhook)
    app.router.add_post("/webhooks/gitea", gitea_webhook)
    app.router.add_get("/healthz", never_500(healthz))
    app.router.add_get("/readyz", never_500(readyz))
    app.router.add_get("/metrics", never_500(metrics))
    parts = services or Services(settings, redis=redis_client, registry_override=registry)
    app[DASHBOARD_NOTE] = dashboard.mount(app, parts, listen_host)

    def default_client() -> aioredis.Redis:
        return connect_async(settings.redis_url, timeout_s=settings.ingest_redis_timeout_s)

    async def ingest_ctx(app: web.Application) -> AsyncIterator[None]:
        client = (aredis or default_client)()
        receiver.ingest = Ingest(
            client,
            settings.keys,
            receiver.spool,
            own_user_id=settings.plane_user_id,
            events_maxlen=settings.events_maxlen,
            delivery_ttl_s=settings.delivery_ttl_s,
            timeout_s=max(settings.ingest_redis_timeout_s * 2, 0.2),
            count=receiver.metrics.count,
        )
        drainer = asyncio.create_task(receiver.ingest.drain_forever(drain_interval_s))
        yield
        drainer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drainer
        await receiver.ingest.close()
        await client.aclose()
        receiver.shared.close()
        if services is None:
            if parts.broker is not None:
                parts.broker.close()
            parts.close()

    app.cleanup_ctx.append(ingest_ctx)
    return app
