"""The board snapshot every viewer shares, read off the event loop.

However many pages are open, a web process reads the board from Redis at most once
per `fresh_s`: the first request after that starts one read in the dashboard's own
thread pool (the receiver's event loop never waits on Redis for it) and every request
meanwhile awaits that same read. A snapshot carries a digest of its content (the time
it was made left out), so the live stream sends a board only when something changed.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class Snapshot:
    digest: str
    body: bytes  # the board as JSON
    made_at: float  # monotonic


class BoardFeed:
    def __init__(
        self, read: Callable[[], dict[str, Any]], executor: Executor, *, fresh_s: float = 0.5
    ) -> None:
        self.read = read
        self.executor = executor
        self.fresh_s = fresh_s
        self._snapshot: Snapshot | None = None
        self._pending: asyncio.Future[Snapshot] | None = None

    async def get(self) -> Snapshot:
        """The board as of at most `fresh_s` ago; raises what the read raised."""
        snap = self._snapshot
        if snap is not None and time.monotonic() - snap.made_at < self.fresh_s:
            return snap
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._refresh())
        return await asyncio.shield(self._pending)

    async def _refresh(self) -> Snapshot:
        try:
            data = await asyncio.get_running_loop().run_in_executor(self.executor, self.read)
            content = {k: v for k, v in data.items() if k != "generated_at"}
            digest = hashlib.sha1(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()
            self._snapshot = Snapshot(digest, orjson.dumps(data), time.monotonic())
            return self._snapshot
        finally:
            self._pending = None

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Run a blocking store call (an action) in the dashboard's pool."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn)
