"""The operator's dashboard, served by `planeflow web`: the board, a task, the actions.

`mount` decides whether it is served: with `ORCH_DASHBOARD_TOKEN` set it always is,
behind the token; without one, only when `web` listens on a loopback address — an
open dashboard on a public interface (a PaaS's `$PORT`) would let anyone cancel work.
Its reads and actions run in a small thread pool of its own, through the store, so
the receiver's event loop never waits on them.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from app.board import Board
from app.dashboard.auth import Guard
from app.dashboard.common import DASHBOARD, Dashboard
from app.dashboard.feed import BoardFeed
from app.dashboard.routes import add_routes
from app.services import Services

log = logging.getLogger(__name__)

__all__ = ["DASHBOARD", "is_loopback", "mount"]


def is_loopback(host: str | None) -> bool:
    if host in (None, "localhost"):
        return host is not None
    try:
        return ipaddress.ip_address(str(host).strip("[]")).is_loopback
    except ValueError:
        return False


def mount(app: web.Application, services: Services, listen_host: str | None) -> str:
    """Add the dashboard to `app` when it may be served; returns a line saying how."""
    settings = services.settings
    token = settings.dashboard_token.get_secret_value()
    if not token and listen_host is not None and not is_loopback(listen_host):
        return (
            f"dashboard not served: web listens on {listen_host} and ORCH_DASHBOARD_TOKEN "
            "is not set"
        )
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dashboard")
    board = Board(settings, services.store, services.registry, services.queue_state)
    dash = Dashboard(
        Guard.for_token(token), BoardFeed(board.snapshot, executor), board, services.actions
    )
    app[DASHBOARD] = dash
    add_routes(app)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        yield
        dash.stopping.set()
        executor.shutdown(wait=False, cancel_futures=True)

    async def stop_streams(app: web.Application) -> None:
        dash.stopping.set()  # live streams end at their next tick, before the handlers wait

    app.on_shutdown.append(stop_streams)
    app.cleanup_ctx.append(lifetime)
    return "dashboard at / (token required)" if token else "dashboard at / (open: loopback only)"
