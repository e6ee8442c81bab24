"""The receiver through aiohttp's test client: every error code, dedup, durable ingest."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import fakeredis
import fakeredis.aioredis
import pytest
from aiohttp.test_utils import TestClient

from app.plane.webhooks import signature
from app.store import Store, connect
from app.web import create_app
from tests.helpers import (
    FIXTURE_SECRET,
    SECRET,
    fixture_delivery,
    registry,
    settings,
)

Client = TestClient[Any, Any]


@pytest.fixture
async def client(
    aiohttp_client: Any, tmp_path: Path, store: Store, fake_server: fakeredis.FakeServer
) -> Client:
    app = create_app(
        settings(tmp_path, webhook_max_body=64 * 1024),
        registry=registry(),
        redis_client=store.r,
        aredis=lambda: fakeredis.aioredis.FakeRedis(server=fake_server, decode_responses=True),
    )
    result: Client = await aiohttp_client(app)
    return result


def queued(store: Store) -> int:
    return int(store.r.llen("dramatiq:events"))


def events(store: Store) -> list[dict[str, str]]:
    return [fields for _, fields in store.r.xrange(store.keys.events)]


async def post_fixture(client: Client, name: str) -> Any:
    body, headers = fixture_delivery(name)
    return await client.post("/webhooks/plane", data=body, headers=headers)


async def test_recorded_state_change_is_stored_and_queued(client: Client, store: Store) -> None:
    resp = await post_fixture(client, "webhook_issue_updated_state")
    assert resp.status == 202
    answer = await resp.json()
    assert answer["accepted"] is True and answer["outcome"] == "process"
    (event,) = events(store)
    assert event["project"] == "orch" and event["field"] == "state"
    assert event["issue"] == "1ab9770d-8f54-4954-a3c2-8b90a164eded"
    assert json.loads(event["body"])["event"] == "issue"  # raw body kept for replay
    assert queued(store) == 1
    assert store.r.get(store.keys.delivery(event["digest"])) == answer["event_id"]


async def test_web_app_state_change_is_processed_too(client: Client, store: Store) -> None:
    resp = await post_fixture(client, "webhook_issue_updated_state_webapp")
    assert (await resp.json())["outcome"] == "process"


async def test_repeated_body_is_a_duplicate_processed_once(client: Client, store: Store) -> None:
    body, headers = fixture_delivery("webhook_issue_updated_state")
    first = await client.post("/webhooks/plane", data=body, headers=headers)
    retry = await client.post(
        "/webhooks/plane", data=body, headers={**headers, "X-Plane-Delivery": "a-new-uuid"}
    )
    assert first.status == 202
    assert retry.status == 200 and (await retry.json())["duplicate"] is True
    assert queued(store) == 1 and len(events(store)) == 1


async def test_bad_signature_is_401(client: Client, store: Store) -> None:
    body, headers = fixture_delivery("webhook_issue_updated_state")
    resp = await client.post(
        "/webhooks/plane", data=body, headers={**headers, "X-Plane-Signature": "0" * 64}
    )
    assert resp.status == 401 and (await resp.json())["error"] == "invalid signature"
    missing = await client.post("/webhooks/plane", data=body)
    assert missing.status == 401
    assert events(store) == [] and queued(store) == 0


async def test_tampered_body_is_401(client: Client) -> None:
    body, headers = fixture_delivery("webhook_issue_updated_state")
    resp = await client.post(
        "/webhooks/plane", data=body.replace(b"high", b"low!"), headers=headers
    )
    assert resp.status == 401


async def test_signed_non_json_is_400_and_logged(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    body = b"{not json"
    with caplog.at_level(logging.INFO, logger="app.web"):
        resp = await client.post(
            "/webhooks/plane",
            data=body,
            headers={"X-Plane-Signature": signature(SECRET, body), "X-Plane-Delivery": "d-1"},
        )
    assert resp.status == 400 and (await resp.json())["error"].startswith("body is not JSON")
    (line,) = [r for r in caplog.records if "refused" in r.getMessage()]
    assert line.levelno == logging.INFO
    assert "refused 400: body is not JSON" in line.getMessage() and "'d-1'" in line.getMessage()


async def test_signed_wrong_shape_is_400(client: Client) -> None:
    body = json.dumps({"event": "issue", "action": "updated"}).encode()
    resp = await client.post(
        "/webhooks/plane", data=body, headers={"X-Plane-Signature": signature(SECRET, body)}
    )
    assert resp.status == 400
    assert "data" in (await resp.json())["error"]


async def test_oversized_body_is_413(client: Client, store: Store) -> None:
    body = b'{"pad": "' + b"x" * (65 * 1024) + b'"}'
    resp = await client.post(
        "/webhooks/plane", data=body, headers={"X-Plane-Signature": signature(SECRET, body)}
    )
    assert resp.status == 413 and "error" in await resp.json()
    assert events(store) == []


async def test_unknown_project_is_acknowledged_logged_not_processed(
    client: Client, store: Store
) -> None:
    payload = json.loads(fixture_delivery("webhook_issue_updated_state")[0])
    payload["data"]["project"] = "00000000-0000-0000-0000-00000000beef"
    body = json.dumps(payload).encode()
    resp = await client.post(
        "/webhooks/plane", data=body, headers={"X-Plane-Signature": signature(SECRET, body)}
    )
    assert resp.status == 202
    (event,) = events(store)
    assert event["outcome"] == "unknown_project"
    assert queued(store) == 0


async def test_non_state_field_is_recorded_but_not_processed(client: Client, store: Store) -> None:
    resp = await post_fixture(client, "webhook_issue_updated_state_and_priority_2")
    assert resp.status == 202
    assert events(store)[0]["outcome"].startswith("ignored: issue/updated/priority")
    assert queued(store) == 0


async def test_project_secret_overrides_the_global_one(client: Client) -> None:
    # the fixture is signed with the ORCH project's own secret, not ORCH_PLANE_WEBHOOK_SECRET
    body, headers = fixture_delivery("webhook_issue_created")
    assert headers["X-Plane-Signature"] == signature(FIXTURE_SECRET, body)
    assert (await client.post("/webhooks/plane", data=body, headers=headers)).status == 202


async def test_gitea_signature_checked(client: Client, store: Store) -> None:
    body = json.dumps({"action": "opened", "repository": {"full_name": "acme/x"}}).encode()
    assert (
        await client.post("/webhooks/gitea", data=body, headers={"X-Gitea-Signature": "bad"})
    ).status == 401


async def test_health_ready_metrics(client: Client, store: Store) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    await post_fixture(client, "webhook_issue_updated_state")
    store.incr_counter("plane_calls", 7)
    text = await (await client.get("/metrics")).text()
    assert 'planeflow_webhooks_total{outcome="process",source="plane"} 1.0' in text
    assert 'planeflow_shared_total{name="plane_calls"} 7.0' in text
    assert 'planeflow_last_webhook_timestamp_seconds{project="orch"}' in text


async def test_readyz_is_503_without_redis(aiohttp_client: Any, tmp_path: Path) -> None:
    dead = connect("redis://127.0.0.1:1/0")
    app = create_app(settings(tmp_path), registry=registry(), redis_client=dead)
    client: Client = await aiohttp_client(app)
    resp = await client.get("/readyz")
    assert resp.status == 503
    # ... and a webhook is still acknowledged, into the fsync'ed spool
    body, headers = fixture_delivery("webhook_issue_updated_state")
    resp = await client.post("/webhooks/plane", data=body, headers=headers)
    assert resp.status == 202 and (await resp.json())["spooled"] is True
    spool_files = list((tmp_path / "spool").glob("spool-*.pfs"))
    assert len(spool_files) == 1 and spool_files[0].stat().st_size > 0
