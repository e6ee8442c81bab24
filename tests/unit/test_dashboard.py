"""The dashboard on `web`: who may see it, CSRF on its actions, what it shows, the stream."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import fakeredis.aioredis
import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from app.dashboard import is_loopback
from app.dashboard.auth import COOKIE, Guard
from app.domain.stages import Stage
from app.queue import make_redis_broker
from app.services import Services
from app.store import Store
from app.web import create_app
from tests.helpers import SECRET, registry, settings

Client = TestClient[Any, Any]
TOKEN = "dashboard-token-0123456789"
ISSUE = "1ab9770d-8f54-4954-a3c2-8b90a164eded"
PAGES = ["/", "/tasks/DEMO-1", "/static/app.js", "/static/style.css"]
APIS = ["/api/board", "/api/tasks/DEMO-1", "/api/stream"]
POSTS = ["/api/tasks/DEMO-1/retry", "/api/tasks/DEMO-1/cancel", "/api/dead-letters/x/requeue"]

MakeClient = Callable[..., Any]


@pytest.fixture
def make_client(
    aiohttp_client: Any, tmp_path: Path, store: Store, fake_server: fakeredis.FakeServer
) -> Iterator[MakeClient]:
    brokers: list[Any] = []

    async def make(*, token: str = "", host: str | None = "127.0.0.1", **extra: Any) -> Client:
        conf = settings(tmp_path, dashboard_token=SecretStr(token), **extra)
        broker = make_redis_broker(client=fakeredis.FakeRedis(server=fake_server))
        brokers.append(broker)
        services = Services(conf, redis=store.r, registry_override=registry(), broker=broker)
        app = create_app(
            conf,
            registry=registry(),
            redis_client=store.r,
            aredis=lambda: fakeredis.aioredis.FakeRedis(server=fake_server, decode_responses=True),
            listen_host=host,
            services=services,
        )
        client: Client = await aiohttp_client(app)
        return client

    yield make
    for broker in brokers:
        broker.close()


def a_task(store: Store, stage: Stage = Stage.BLOCKED, title: str = "Fix the login") -> str:
    task, _ = store.create_task_atomic(
        ISSUE,
        "DEMO-1",
        "https://bot:hunter2@git.example/demo.git",
        "b",
        Stage.ANALYSIS,
        title,
        project="demo",
    )
    if stage is not Stage.ANALYSIS:
        store.move_task(task.id, stage, "test", failed_stage=Stage.DEVELOPMENT)
    return task.id


async def csrf_of(client: Client) -> str:
    page = await (await client.get("/")).text()
    found = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page)
    assert found is not None
    return found.group(1)


# -- where it is served ---------------------------------------------------------------
def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "", "10.0.0.5", "::", "example.com"))


async def test_open_on_loopback(make_client: MakeClient, store: Store) -> None:
    a_task(store)
    client = await make_client()
    page = await client.get("/")
    assert page.status == 200 and "text/html" in page.headers["Content-Type"]
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    board = await (await client.get("/api/board")).json()
    (row,) = board["tasks"]["blocked"]
    assert (row["work_item"], row["title"], row["can_retry"]) == ("DEMO-1", "Fix the login", True)
    assert (await client.get("/static/app.js")).status == 200


async def test_not_served_on_a_public_address_without_a_token(make_client: MakeClient) -> None:
    client = await make_client(host="0.0.0.0")
    for path in [*PAGES, *APIS, "/login"]:
        assert (await client.get(path)).status == 404, path
    assert (await client.get("/healthz")).status == 200  # the receiver is all there


async def test_served_on_a_public_address_with_a_token(make_client: MakeClient) -> None:
    client = await make_client(token=TOKEN, host="0.0.0.0")
    assert (await client.get("/api/board", headers={"Authorization": f"Bearer {TOKEN}"})).ok


# -- the token ------------------------------------------------------------------------
async def test_with_a_token_nothing_answers_without_it(
    make_client: MakeClient, store: Store
) -> None:
    a_task(store)
    client = await make_client(token=TOKEN)
    for path in PAGES:
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"].startswith("/login?next="), path
    for path in APIS:
        resp = await client.get(path)
        assert resp.status == 401, path
        assert "DEMO-1" not in await resp.text()
    for path in POSTS:
        assert (await client.post(path)).status == 401, path
    wrong = {"Authorization": "Bearer not-the-token"}
    assert (await client.get("/api/board", headers=wrong)).status == 401
    assert (await client.get("/api/board", headers={"Authorization": f"Bearer {TOKEN}"})).ok


async def test_login_sets_a_session_that_is_not_the_token(make_client: MakeClient) -> None:
    client = await make_client(token=TOKEN)
    refused = await client.post("/login", data={"token": "guess", "next": "/"})
    assert refused.status == 401 and "not the dashboard token" in await refused.text()
    resp = await client.post(
        "/login", data={"token": TOKEN, "next": "/tasks/DEMO-1"}, allow_redirects=False
    )
    assert resp.status == 303 and resp.headers["Location"] == "/tasks/DEMO-1"
    cookie = resp.cookies[COOKIE]
    assert TOKEN not in cookie.value and cookie["httponly"] and cookie["samesite"] == "Strict"
    assert (await client.get("/api/board")).status == 200
    assert (await client.get("/")).status == 200
    # another site cannot log you out; the page's own form can
    assert (await client.post("/logout", allow_redirects=False)).status == 403
    token = await csrf_of(client)
    out = await client.post("/logout", data={"csrf": token}, allow_redirects=False)
    assert out.status == 303 and out.cookies[COOKIE].value == ""
    client.session.cookie_jar.clear()
    assert (await client.get("/api/board")).status == 401


@pytest.mark.parametrize(
    "target", ["//evil.example/", "/\t/evil.example", "/\n/evil.example", "https://evil.example"]
)
async def test_login_goes_back_to_this_site_only(make_client: MakeClient, target: str) -> None:
    client = await make_client(token=TOKEN)
    resp = await client.post("/login", data={"token": TOKEN, "next": target}, allow_redirects=False)
    assert resp.headers["Location"] == "/"


async def test_a_wrong_token_keeps_where_you_were_going(make_client: MakeClient) -> None:
    client = await make_client(token=TOKEN)
    resp = await client.post("/login", data={"token": "guess", "next": "/tasks/DEMO-1"})
    assert 'name="next" value="/tasks/DEMO-1"' in await resp.text()


async def test_guessing_the_token_is_refused_past_a_few_a_minute(make_client: MakeClient) -> None:
    client = await make_client(token=TOKEN)
    wrong = {"Authorization": "Bearer guess"}
    statuses = [(await client.get("/api/board", headers=wrong)).status for _ in range(12)]
    assert statuses == [401] * 10 + [429] * 2
    login = await client.post("/login", data={"token": TOKEN})  # even the right one waits
    assert login.status == 429 and "Too many wrong tokens" in await login.text()


async def raw_get(client: Client, path: str, headers: bytes) -> tuple[int, bytes]:
    """A GET whose header bytes are sent as they are (not valid UTF-8, say)."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(
        b"GET " + path.encode() + b" HTTP/1.1\r\n" + headers + b"Connection: close\r\n\r\n"
    )
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return int(answer.split()[1]), answer


async def test_header_bytes_that_are_not_utf8_are_refused_not_500(
    make_client: MakeClient,
) -> None:
    closed = await make_client(token=TOKEN)
    status, _ = await raw_get(
        closed, "/api/board", b"Host: 127.0.0.1\r\nAuthorization: Bearer \xe9\xff\r\n"
    )
    assert status == 401
    status, _ = await raw_get(
        closed, "/api/board", b"Host: 127.0.0.1\r\nCookie: planeflow_session=\xe9\xff\r\n"
    )
    assert status == 401
    opened = await make_client()
    status, _ = await raw_get(
        opened, "/", b"Host: 127.0.0.1\r\nCookie: planeflow_session=\xe9\xff\r\n"
    )
    assert status == 200


async def test_an_open_dashboard_answers_only_to_loopback_names(
    make_client: MakeClient, store: Store
) -> None:
    """DNS rebinding: a site whose name now points at 127.0.0.1 is not let in."""
    a_task(store)
    client = await make_client()
    for host in ("evil.example:8080", "rebind.evil.example", "10.0.0.5"):
        for path in ("/", "/api/board", "/login"):
            resp = await client.get(path, headers={"Host": host}, allow_redirects=False)
            assert resp.status == 421, (host, path)
            assert "DEMO-1" not in await resp.text()
    for host in ("127.0.0.1:8080", "localhost", "[::1]:8080"):
        assert (await client.get("/api/board", headers={"Host": host})).status == 200
    token = await csrf_of(client)
    rebound = {"Host": "evil.example", "Origin": "http://evil.example", "X-CSRF-Token": token}
    assert (await client.post("/api/tasks/DEMO-1/cancel", headers=rebound)).status == 421


def test_sessions_expire_and_follow_the_token() -> None:
    guard = Guard.for_token(TOKEN)
    session = guard.new_session(now=1_000_000)
    assert guard.session_ok(session, now=1_000_100)
    assert not guard.session_ok(session, now=1_000_000 + 8 * 24 * 3600)
    assert not Guard.for_token("another-token").session_ok(session, now=1_000_100)
    assert not guard.session_ok("1000000.forged", now=1_000_100)


# -- CSRF -----------------------------------------------------------------------------
async def test_a_post_needs_the_pages_csrf_token(make_client: MakeClient, store: Store) -> None:
    task_id = a_task(store)
    client = await make_client()
    assert (await client.post("/api/tasks/DEMO-1/retry")).status == 403
    bad = {"X-CSRF-Token": "0" * 64}
    assert (await client.post("/api/tasks/DEMO-1/retry", headers=bad)).status == 403
    token = await csrf_of(client)
    other_site = {"X-CSRF-Token": token, "Origin": "https://evil.example"}
    assert (await client.post("/api/tasks/DEMO-1/retry", headers=other_site)).status == 403
    cross = {"X-CSRF-Token": token, "Sec-Fetch-Site": "cross-site"}
    assert (await client.post("/api/tasks/DEMO-1/retry", headers=cross)).status == 403
    task = store.get_task(task_id)
    assert task is not None and task.stage is Stage.BLOCKED  # nothing happened
    ok = await client.post("/api/tasks/DEMO-1/retry", headers={"X-CSRF-Token": token})
    assert ok.status == 200 and (await ok.json())["result"] == "resumed: at development"


async def test_a_bearer_post_needs_no_csrf_token(make_client: MakeClient, store: Store) -> None:
    a_task(store, Stage.REVIEW)
    client = await make_client(token=TOKEN)
    resp = await client.post(
        "/api/tasks/DEMO-1/cancel", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert resp.status == 200 and (await resp.json())["kind"] == "cancelled"


# -- actions and what is shown ----------------------------------------------------------
async def test_actions_leave_the_client_on_the_timeline(
    make_client: MakeClient, store: Store
) -> None:
    task_id = a_task(store)
    client = await make_client()
    token = await csrf_of(client)
    await client.post("/api/tasks/DEMO-1/retry", headers={"X-CSRF-Token": token})
    again = await client.post("/api/tasks/DEMO-1/retry", headers={"X-CSRF-Token": token})
    assert again.status == 409
    assert "nothing to retry" in (await again.json())["result"]
    actions = [e["message"] for e in store.timeline(task_id) if e["kind"] == "action"]
    assert actions[0] == "retry by dashboard (client 127.0.0.1): resumed: at development"
    detail = await (await client.get("/api/tasks/demo-1")).json()
    assert [e["kind"] for e in detail["timeline"]].count("action") == 2
    missing = await client.post("/api/tasks/DEMO-9/cancel", headers={"X-CSRF-Token": token})
    assert missing.status == 404
    spoofed = {"X-CSRF-Token": token, "X-Forwarded-For": "cli (user ada)"}
    await client.post("/api/tasks/DEMO-1/cancel", headers=spoofed)
    assert store.recent_actions()[0]["origin"] == "dashboard (client 127.0.0.1)"


async def test_no_secret_is_ever_shown(make_client: MakeClient, store: Store) -> None:
    a_task(store)
    client = await make_client(token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    texts = [await (await client.get(p, headers=auth)).text() for p in ["/", "/api/board"]]
    texts.append(await (await client.get("/api/tasks/DEMO-1", headers=auth)).text())
    for text in texts:
        for secret in (TOKEN, SECRET, "plane_api_sandbox", "hunter2"):
            assert secret not in text


async def test_a_redis_failure_is_a_503_not_a_500(
    make_client: MakeClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await make_client()

    def down(*_: Any, **__: Any) -> Any:
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(Store, "board_tasks", down)
    resp = await client.get("/api/board")
    assert resp.status == 503 and "cannot be read" in (await resp.json())["error"]


# -- live -------------------------------------------------------------------------------
async def test_the_stream_sends_the_board_again_when_it_changes(
    make_client: MakeClient, store: Store
) -> None:
    task_id = a_task(store, Stage.ANALYSIS)
    client = await make_client()
    resp = await client.get("/api/stream")
    assert resp.headers["Content-Type"] == "text/event-stream"

    async def next_board() -> str:
        while True:
            line = (await resp.content.readline()).decode()
            if line.startswith("data: "):
                return line

    first = await asyncio.wait_for(next_board(), 5)
    assert '"analysis":[{' in first
    store.move_task(task_id, Stage.DEVELOPMENT, "test")
    second = await asyncio.wait_for(next_board(), 5)
    assert '"development":[{' in second and '"analysis":[]' in second
    resp.close()


def test_a_busy_board_reads_the_newest_finished_tasks_only(store: Store) -> None:
    from app.board import FINISHED_SHOWN, Board
    from app.queue_state import QueueState

    for n in range(1, 121):
        task, _ = store.create_task_atomic(
            f"00000000-0000-4000-8000-{n:012d}",
            f"DEMO-{n}",
            "r",
            "b",
            Stage.ANALYSIS,
            "t",
            project="demo",
        )
        store.move_task(task.id, Stage.DONE if n <= 110 else Stage.REVIEW, "test")
    board = Board(settings(Path("/tmp")), store, registry(), QueueState(store.r)).snapshot()
    assert board["counts"]["done"] == 110 and board["counts"]["review"] == 10
    shown = [t["work_item"] for t in board["tasks"]["done"]]
    assert len(shown) == FINISHED_SHOWN and shown[0] == "DEMO-110"
    assert len(board["tasks"]["review"]) == 10
