"""The sandbox Plane's webhook sender: signed deliveries, like real Plane's worker.

One delivery per event, body = Python `json.dumps` (", " / ": " separators, non-ASCII
escaped), `X-Plane-Signature` = hex HMAC-SHA256 of the raw body with the secret, a new
`X-Plane-Delivery` UUID per attempt. Any HTTP answer counts as delivered (even 500);
only connection errors and timeouts are retried, with backoff. `data` is rendered when
the delivery is sent, so it reflects the item at send time, as in Plane.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

log = logging.getLogger(__name__)


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@dataclass
class Delivery:
    event: str
    action: str
    build: Callable[[], dict[str, Any]]  # renders the body at send time
    field_name: str | None = None
    attempts: int = 0
    status: int | None = None
    error: str | None = None
    delivery_ids: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "action": self.action,
            "field": self.field_name,
            "attempts": self.attempts,
            "status": self.status,
            "error": self.error,
        }


class WebhookSender:
    """Queues deliveries and POSTs them in order from a task on the server's loop."""

    def __init__(
        self, *, retries: int = 5, backoff_s: float = 1.0, timeout_s: float = 10.0
    ) -> None:
        self.url: str | None = None
        self.secret: str = ""
        self.webhook_id = str(uuid.uuid4())
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.sent: list[Delivery] = []
        self._queue: asyncio.Queue[Delivery] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._idle: asyncio.Event | None = None

    def configure(self, url: str | None, secret: str = "") -> None:
        self.url, self.secret = url, secret

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def enqueue(self, delivery: Delivery) -> None:
        """Thread-safe: may be called from any thread."""
        if self.url is None or self._loop is None or self._queue is None:
            return
        queue, idle = self._queue, self._idle
        assert idle is not None

        def put() -> None:
            idle.clear()
            queue.put_nowait(delivery)

        self._loop.call_soon_threadsafe(put)

    async def drained(self) -> None:
        """Wait until every queued delivery has been attempted."""
        assert self._queue is not None
        await self._queue.join()

    async def _run(self) -> None:
        assert self._queue is not None
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                delivery = await self._queue.get()
                try:
                    await self._send(session, delivery)
                except Exception:
                    log.exception("sandbox webhook delivery crashed")
                finally:
                    self.sent.append(delivery)
                    self._queue.task_done()

    async def _send(self, session: aiohttp.ClientSession, delivery: Delivery) -> None:
        # Rendered once: a retry resends identical bytes (the receiver dedups on them).
        body = json.dumps(delivery.build()).encode("utf-8")
        for attempt in range(self.retries + 1):
            if self.url is None:
                delivery.error = "no webhook url"
                return
            delivery_id = str(uuid.uuid4())
            delivery.delivery_ids.append(delivery_id)
            delivery.attempts += 1
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "Autopilot",
                "X-Plane-Delivery": delivery_id,
                "X-Plane-Event": delivery.event,
                "X-Plane-Signature": sign(self.secret, body),
            }
            try:
                async with session.post(self.url, data=body, headers=headers) as resp:
                    await resp.read()
                    delivery.status = resp.status  # any answer counts as delivered
                    delivery.error = None
                    return
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                delivery.error = f"{type(exc).__name__}: {exc}"
                if attempt < self.retries:
                    await asyncio.sleep(self.backoff_s * (2**attempt))
        log.warning(
            "sandbox webhook %s/%s not delivered after %d attempts: %s",
            delivery.event,
            delivery.action,
            delivery.attempts,
            delivery.error,
        )
