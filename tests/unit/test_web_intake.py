"""The receiver over a real socket: bodies in pieces, limits, idle senders, odd signatures,
ids that must never reach a URL, and folding of state deliveries."""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path
from typing import Any

import fakeredis
import fakeredis.aioredis
import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from app.plane.webhooks import signature
from app.store import Store
from app.web import create_app
from tests.helpers import SECRET, fixture_delivery, registry, settings

Client = TestClient[Any, Any]
DEMO = registry().projects["demo"].plane_project_id
ITEM = "1ab9770d-8f54-4954-a3c2-8b90a164eded"
SEGMENT = 1460


@pytest.fixture
async def client(
    aiohttp_client: Any, tmp_path: Path, store: Store, fake_server: fakeredis.FakeServer
) -> Client:
    app = create_app(
        settings(tmp_path, webhook_read_idle_s=0.5, plane_user_id="bot-user"),
        registry=registry(),
        redis_client=store.r,
        aredis=lambda: fakeredis.aioredis.FakeRedis(server=fake_server, decode_responses=True),
    )
    result: Client = await aiohttp_client(app)
    return result


def state_body(size: int = 0, *, item: Any = ITEM, actor: str = "human", nonce: str = "") -> bytes:
    body = {
        "event": "issue",
        "action": "updated",
        "webhook_id": "wh",
        "workspace_id": "ws",
        "data": {"id": item, "project": DEMO, "name": "x", "pad": nonce},
        "activity": {"field": "state", "actor": {"id": actor}},
    }
    raw = json.dumps(body).encode()
    if size > len(raw):
        body["data"]["pad"] = nonce + "p" * (size - len(raw))
        raw = json.dumps(body).encode()
    return raw


async def raw_post(
    client: Client,
    body: bytes,
    *,
    gap_s: float = 0.0,
    headers: dict[str, str] | None = None,
    chunked: bool = False,
    stop_after: int | None = None,
) -> int:
    """POST over a plain socket, the body in 1,460-byte writes; returns the status code."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    head = {"Host": "x", "Content-Type": "application/json", **(headers or {})}
    head.setdefault("X-Plane-Signature", signature(SECRET, body))
    if chunked:
        head["Transfer-Encoding"] = "chunked"
    else:
        head["Content-Length"] = str(len(body))
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    writer.write(f"POST /webhooks/plane HTTP/1.1\r\n{lines}\r\n".encode())
    sent = 0
    try:
        for start in range(0, len(body), SEGMENT):
            if stop_after is not None and sent >= stop_after:
                break
            piece = body[start : start + SEGMENT]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            await writer.drain()
            sent += len(piece)
            if gap_s:
                await asyncio.sleep(gap_s)
        if chunked and stop_after is None:
            writer.write(b"0\r\n\r\n")
        status_line = await asyncio.wait_for(reader.readline(), 10)
        return int(status_line.split()[1])
    except (ConnectionResetError, BrokenPipeError):
        # the server answered early (413) and closed while we were still sending
        status_line = await asyncio.wait_for(reader.readline(), 2)
        return int(status_line.split()[1])
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("size", "gap_s"),
    [(1536, 0.05), (4096, 0.001), (4096, 0.05), (16 * 1024, 0.01), (64 * 1024, 0.0)],
)
async def test_signed_body_in_segments_is_accepted(client: Client, size: int, gap_s: float) -> None:
    assert await raw_post(client, state_body(size, nonce=f"{size}-{gap_s}"), gap_s=gap_s) == 202


async def test_signed_64k_body_with_50ms_gaps_is_accepted(client: Client) -> None:
    assert await raw_post(client, state_body(64 * 1024), gap_s=0.05) == 202


async def test_one_mebibyte_body_without_gaps_is_accepted(client: Client) -> None:
    assert await raw_post(client, state_body(1024 * 1024 - 200)) == 202


async def test_chunked_body_is_read_whole(client: Client) -> None:
    assert await raw_post(client, state_body(10_000), chunked=True, gap_s=0.005) == 202


async def test_over_the_limit_is_413_with_or_without_length(client: Client, store: Store) -> None:
    big = state_body(1024 * 1024 + 10)
    assert await raw_post(client, big) == 413
    assert await raw_post(client, big, chunked=True) == 413
    assert store.r.xlen(store.keys.events) == 0


async def test_silent_sender_gets_408(client: Client, store: Store) -> None:
    body = state_body(8000)
    assert await raw_post(client, body, stop_after=SEGMENT) == 408
    assert store.r.xlen(store.keys.events) == 0


@pytest.mark.parametrize(
    "header",
    ["é" * 64, "z" * 64, "ab", "", "  ", signature(SECRET, b"other") + "00"],
)
async def test_malformed_signature_is_401(client: Client, header: str) -> None:
    body, _ = fixture_delivery("webhook_issue_updated_state")
    resp = await client.post("/webhooks/plane", data=body, headers={"X-Plane-Signature": header})
    assert resp.status == 401


async def test_non_ascii_signature_bytes_are_401_not_500(client: Client) -> None:
    body = state_body()
    status = await raw_post(client, body, headers={"X-Plane-Signature": "\u00e9" * 32})
    assert status == 401


async def test_deeply_nested_unsigned_body_is_401_and_signed_is_400(client: Client) -> None:
    nested = b"[" * 5000 + b"]" * 5000
    assert (await client.post("/webhooks/plane", data=nested)).status == 401
    signed = await client.post(
        "/webhooks/plane", data=nested, headers={"X-Plane-Signature": signature(SECRET, nested)}
    )
    assert signed.status == 400 and "nested" in (await signed.json())["error"]


async def test_other_projects_secret_does_not_sign_for_this_one(client: Client) -> None:
    from tests.helpers import FIXTURE_SECRET

    body = state_body()  # the DEMO project, whose secret is the default one
    resp = await client.post(
        "/webhooks/plane", data=body, headers={"X-Plane-Signature": signature(FIXTURE_SECRET, body)}
    )
    assert resp.status == 401


@pytest.mark.parametrize(
    "item", ["../../../../../users/me", f"../../other/work-items/{ITEM}", f"{ITEM}\x00", 42, None]
)
async def test_invalid_work_item_id_is_stored_as_ignored_never_queued(
    client: Client, store: Store, item: Any
) -> None:
    body = state_body(item=item)
    resp = await client.post(
        "/webhooks/plane", data=body, headers={"X-Plane-Signature": signature(SECRET, body)}
    )
    assert resp.status == 202
    (event,) = [f for _, f in store.r.xrange(store.keys.events)]
    assert event["outcome"].startswith("ignored: work item id")
    assert store.r.llen("dramatiq:events") == 0


async def post(client: Client, body: bytes) -> dict[str, Any]:
    resp = await client.post(
        "/webhooks/plane", data=body, headers={"X-Plane-Signature": signature(SECRET, body)}
    )
    assert resp.status == 202
    answer: dict[str, Any] = await resp.json()
    return answer


async def test_state_deliveries_fold_into_the_queued_event(client: Client, store: Store) -> None:
    first = await post(client, state_body(nonce="1"))
    second = await post(client, state_body(nonce="2"))
    assert second["outcome"] == "folded" and second["folded_into"] == first["event_id"]
    assert store.r.llen("dramatiq:events") == 1
    # the worker starts the first event: a later delivery queues anew
    assert store.clear_fold(ITEM, first["event_id"])
    third = await post(client, state_body(nonce="3"))
    assert third["outcome"] == "process" and store.r.llen("dramatiq:events") == 2
    outcomes = [f["outcome"] for _, f in store.r.xrange(store.keys.events)]
    assert outcomes == ["process", f"folded: {first['event_id']}", "process"]


async def test_own_echo_never_absorbs_a_humans_delivery(client: Client, store: Store) -> None:
    echo = await post(client, state_body(actor="bot-user", nonce="1"))
    human = await post(client, state_body(actor="human", nonce="2"))
    assert human["outcome"] == "process"  # queued on its own
    later_echo = await post(client, state_body(actor="bot-user", nonce="3"))
    assert later_echo["folded_into"] == human["event_id"]
    assert store.r.llen("dramatiq:events") == 2
    assert not store.clear_fold(ITEM, echo["event_id"])  # the marker names the human's now


def comment_body(html: str, *, issue: Any = ITEM, nonce: str = "") -> bytes:
    body = {
        "event": "issue_comment",
        "action": "created",
        "webhook_id": "wh",
        "workspace_id": "ws",
        "data": {
            "id": "c9e0e8cd-5c5f-4f58-8327-cff5e8043808",
            "project": DEMO,
            "issue": issue,
            "comment_html": html,
            "pad": nonce,
        },
        "activity": {"field": None, "actor": {"id": "human"}},
    }
    return json.dumps(body).encode()


async def test_a_comment_with_a_command_is_queued_and_never_folded(
    client: Client, store: Store
) -> None:
    await post(client, state_body(nonce="1"))  # a state event of the item is queued
    first = await post(client, comment_body("<p>/planeflow status</p>", nonce="1"))
    second = await post(client, comment_body("<p>/planeflow retry</p>", nonce="2"))
    assert first["outcome"] == second["outcome"] == "process"
    assert store.r.llen("dramatiq:events") == 3
    (_, event), *_ = store.r.xrange(store.keys.events, first["event_id"], first["event_id"])
    assert (event["event"], event["issue"]) == ("issue_comment", ITEM)


async def test_a_comment_without_a_command_is_kept_but_not_queued(
    client: Client, store: Store
) -> None:
    answer = await post(client, comment_body("<p>looks good to me</p>"))
    assert answer["outcome"] == "ignored: issue_comment/created (no /planeflow command)"
    assert store.r.llen("dramatiq:events") == 0


async def test_a_comment_on_an_invalid_work_item_id_is_ignored(
    client: Client, store: Store
) -> None:
    answer = await post(client, comment_body("<p>/planeflow retry</p>", issue="../../users/me"))
    assert answer["outcome"].startswith("ignored: work item id")
    assert store.r.llen("dramatiq:events") == 0


@pytest.mark.parametrize("where", ["field", "event", "action", "actor"])
async def test_a_lone_surrogate_escape_in_a_signed_body_is_replaced_not_a_503(
    client: Client, store: Store, where: str
) -> None:
    """orjson refuses "\\udfff"; the standard library's fallback returns it as a lone
    surrogate, which then failed the answer (and with it every request of its batch) or
    the Dramatiq message (a 503 on every retry)."""
    body = json.loads(state_body())
    marker = "SURROGATE-HERE"
    if where == "field":
        body["activity"]["field"] = marker
    elif where == "actor":
        body["activity"]["actor"]["id"] = marker
    else:
        body[where] = marker
    raw = json.dumps(body).encode().replace(marker.encode(), b"\\udfff")
    others = [state_body(item=f"00000000-0000-4000-8000-{n:012d}") for n in range(8)]
    statuses = await asyncio.gather(
        *[raw_post(client, one) for one in [raw, *others]]  # one batch, or a few
    )
    assert statuses == [202] * 9
    stored = [f for _, f in store.r.xrange(store.keys.events)]
    assert len(stored) == 9
    assert any("\\udfff" in f["body"] for f in stored)  # the body is kept as it was signed
    for text in store.r.hvals("dramatiq:events.msgs"):
        json.loads(text)  # every queued message is valid JSON


async def test_a_gitea_event_header_that_is_not_utf8_is_replaced_not_a_503(
    aiohttp_client: Any, tmp_path: Path, store: Store, fake_server: fakeredis.FakeServer
) -> None:
    app = create_app(
        settings(tmp_path, gitea_webhook_secret=SecretStr("gitea-secret")),
        registry=registry(
            forge={
                "plane_project_id": "00000000-0000-4000-8000-00000000f0f0",
                "repo": "forge-repo",
                "work_item_prefix": "FORGE",
                "gitea_repo": "acme/x",
            }
        ),
        redis_client=store.r,
        aredis=lambda: fakeredis.aioredis.FakeRedis(server=fake_server, decode_responses=True),
    )
    server: Client = await aiohttp_client(app)
    body = json.dumps({"action": "opened", "repository": {"full_name": "acme/x"}}).encode()
    reader, writer = await asyncio.open_connection(server.server.host, server.server.port)
    writer.write(
        b"POST /webhooks/gitea HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
        b"X-Gitea-Signature: %s\r\nX-Gitea-Event: pull\xff\xferequest\r\n"
        b"X-Gitea-Delivery: d\xff1\r\n\r\n%s"
        % (len(body), signature("gitea-secret", body).encode(), body)
    )
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert int(status_line.split()[1]) == 202
    ((_, event),) = store.r.xrange(store.keys.events)
    assert event["event"] == "pull??request" and event["delivery"] == "d?1"
    assert event["outcome"] == "ignored: pull??request"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
async def test_a_compressed_body_is_verified_as_sent_never_decoded(
    client: Client, store: Store, encoding: str
) -> None:
    """Not compressed data under Content-Encoding made aiohttp's decoder raise (503 to an
    unsigned sender); a compressed body was verified after decoding, not as sent."""
    garbage = await raw_post(
        client, b"hello", headers={"Content-Encoding": encoding, "X-Plane-Signature": "0" * 64}
    )
    assert garbage == 401
    body = state_body()
    packed = gzip.compress(body)
    # signed before compression: not the bytes sent → 401, never decoded
    assert (
        await raw_post(
            client,
            packed,
            headers={"Content-Encoding": "gzip", "X-Plane-Signature": signature(SECRET, body)},
        )
        == 401
    )
    # signed as sent: verified, then it is not JSON → 400
    assert await raw_post(client, packed, headers={"Content-Encoding": "gzip"}) == 400
    assert store.r.xlen(store.keys.events) == 0
