"""A bounded fuzz of the receiver: thousands of odd requests, never a 5xx, and nothing
unsigned ever reaches `pf:events` or the queue."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import fakeredis
import fakeredis.aioredis
from aiohttp.test_utils import TestClient

from app.plane.webhooks import signature
from app.store import Store
from app.web import create_app
from tests.helpers import SECRET, fixture_delivery, registry, settings

Client = TestClient[Any, Any]
REQUESTS = 3000


def nested(rng: random.Random) -> bytes:
    depth = rng.choice([10, 500, 990, 2000, 20_000])
    opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
    return (opener * depth + "1" + closer * depth).encode()


def mutated_fixture(rng: random.Random) -> bytes:
    body = bytearray(fixture_delivery("webhook_issue_updated_state")[0])
    for _ in range(rng.randint(1, 8)):
        body[rng.randrange(len(body))] = rng.randrange(256)
    return bytes(body)


def odd_json(rng: random.Random) -> bytes:
    data = json.loads(fixture_delivery("webhook_issue_updated_state")[0])
    choice = rng.randrange(6)
    if choice == 0:
        data["data"]["id"] = rng.choice(["../../../users/me", "a\x00b", "", 7, None, ["x"]])
    elif choice == 1:
        data["data"] = rng.choice([None, [], "x", 1])
    elif choice == 2:
        data["activity"] = rng.choice([None, [], {"actor": "x"}, {"actor": {"id": 5}}])
    elif choice == 3:
        data["event"] = rng.choice([None, 1, "x" * 5000, "issue_comment"])
    elif choice == 4:
        data["data"]["project"] = rng.choice(["../x", None, "00000000-0000-0000-0000-00000000beef"])
    else:
        data = rng.choice([[], "str", 1.5, None, {"event": "issue"}])
    return json.dumps(data).encode()


def body_for(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randbytes(rng.randint(0, 3000))
    if kind == 1:
        return nested(rng)
    if kind == 2:
        return mutated_fixture(rng)
    if kind == 3:
        return b"x" * (64 * 1024 + rng.randint(1, 1000))
    return odd_json(rng)


def signature_for(rng: random.Random, body: bytes) -> tuple[str | None, bool]:
    """A header value (or None) and whether it is the body's true signature."""
    kind = rng.randrange(7)
    if kind == 0:
        return None, False
    if kind == 1:
        return signature(SECRET, body), True
    if kind == 2:
        return signature(SECRET, body)[:-1] + "g", False
    if kind == 3:
        return "".join(rng.choice("0123456789abcdef") for _ in range(64)), False
    if kind == 4:
        return rng.choice(["", " ", "sha256=" + signature(SECRET, body), "0" * 10_000]), False
    if kind == 5:
        return signature(SECRET, body).upper(), True  # hex is case-insensitive
    return signature("wrong-secret", body), False


async def test_fuzzed_requests_never_5xx_and_unsigned_never_stored(
    aiohttp_client: Any, tmp_path: Path, store: Store, fake_server: fakeredis.FakeServer
) -> None:
    app = create_app(
        settings(tmp_path, webhook_max_body=64 * 1024),
        registry=registry(),
        redis_client=store.r,
        aredis=lambda: fakeredis.aioredis.FakeRedis(server=fake_server, decode_responses=True),
    )
    client: Client = await aiohttp_client(app)
    rng = random.Random(20261125)
    signed: set[str] = set()
    statuses: dict[int, int] = {}

    async def one() -> None:
        body = body_for(rng)
        header, valid = signature_for(rng, body)
        path = rng.choice(["/webhooks/plane"] * 4 + ["/webhooks/gitea"])
        headers = {}
        if header is not None:
            headers["X-Plane-Signature" if path.endswith("plane") else "X-Gitea-Signature"] = header
        if valid and path.endswith("plane"):
            signed.add(signature(SECRET, body))
        resp = await client.post(path, data=body, headers=headers)
        await resp.read()
        statuses[resp.status] = statuses.get(resp.status, 0) + 1

    for _ in range(REQUESTS // 20):
        await asyncio.gather(*(one() for _ in range(20)))

    assert sum(statuses.values()) == REQUESTS
    assert not [s for s in statuses if s >= 500], statuses
    assert {400, 401, 413} <= set(statuses)
    stored = [fields["digest"] for _, fields in store.r.xrange(store.keys.events)]
    assert stored, "some signed, well-formed bodies were expected to be stored"
    assert set(stored) <= signed
    queued = store.r.hvals("dramatiq:events.msgs")
    assert all(json.loads(m)["args"][0]["event_id"] for m in queued)
    assert len(queued) <= len(stored)
