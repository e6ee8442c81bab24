"""Replay every recorded real-Plane request against the sandbox; answers must match in shape.

Each fixture gets a fresh sandbox seeded with the recording's ids (workspace `acme`,
project ORCH with its five states and 120 work items, project OPS). The comparison
covers status code, JSON keys at every level, value types where both sides are
non-null, the pagination envelope, and the rate-limit headers' presence.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.sandbox.plane_runner import SandboxPlaneRunner
from app.sandbox.plane_server import SandboxPlane
from app.sandbox.plane_world import CLASSIC_STATES, World
from tests.conftest import FIXTURES

API_KEY = "plane_api_0123456789abcdef0123456789abcdef"
ORCH = "18c1fbbe-60b8-4f30-9f83-c0398a578ce3"
OPS = "0ad66e3a-f85e-42d8-a162-7a94bbaa71f8"
ORCH_STATES = {
    "Backlog": "1381ba0e-0431-4a2f-b0f9-a39bb1d90f3d",
    "Todo": "a8405022-40cd-43a2-a628-c1f7723851d3",
    "In Progress": "7414f69a-3380-4915-9503-d26fb7531c05",
    "Done": "dd9a6939-a755-42e9-8661-2370bd77bbe5",
    "Cancelled": "9b0a4ab1-0000-0000-0000-000000000000",
}
ITEM_IDS = {
    1: "1ab9770d-8f54-4954-a3c2-8b90a164eded",
    2: "9f466884-dbee-49a9-8733-bb2e629f910d",
    3: "530d3ff2-7f4d-426e-9300-07b398987cdd",
}
REST = sorted(p for p in FIXTURES.glob("*.json") if "request" in json.loads(p.read_text()))


def fixture_world() -> World:
    world = World("acme", workspace_id="53c2eaf7-eac6-4526-97ac-14d41c21be90")
    ada = world.add_user(
        API_KEY,
        "ada",
        user_id="d0a27cc8-43ec-43fb-b3e6-189dfa2eea8f",
        first_name="Ada",
        last_name="Admin",
    )
    world.users_by_key[API_KEY].email = "admin@example.com"
    orch = world.add_project("ORCH", "Orchestrator", ada, project_id=ORCH, state_ids=ORCH_STATES)
    world.add_project(
        "OPS",
        "Operations",
        ada,
        project_id=OPS,
        state_ids={"Backlog": "2a7dcce6-1715-40a9-b1be-9e3a3bc7597f"},
        states=CLASSIC_STATES,
    )
    for n in range(1, 121):
        body: dict[str, Any] = {"name": f"Fixture work item {n:03d}", "priority": "high"}
        if n == 1:
            body.update(external_id="orch-001", external_source="orchestrator")
        item = world.create_item(orch, body, ada)
        if n in ITEM_IDS:  # re-key to the recorded ids
            del orch.items[item.id]
            item.id = ITEM_IDS[n]
            orch.items[item.id] = item
    item1 = orch.items[ITEM_IDS[1]]
    world.update_item(orch, item1, {"state": ORCH_STATES["In Progress"]}, ada)
    world.add_comment(orch, item1, {"comment_html": "<p>hello</p>"}, ada)
    return world


def shape_diff(recorded: Any, ours: Any, path: str = "$") -> list[str]:
    if recorded is None or ours is None:
        return []
    if isinstance(recorded, dict):
        if not isinstance(ours, dict):
            return [f"{path}: expected object, got {type(ours).__name__}"]
        out = [f"{path}: missing key {k!r}" for k in recorded if k not in ours]
        out += [f"{path}: extra key {k!r}" for k in ours if k not in recorded]
        for k in recorded:
            if k in ours:
                out += shape_diff(recorded[k], ours[k], f"{path}.{k}")
        return out
    if isinstance(recorded, list):
        if not isinstance(ours, list):
            return [f"{path}: expected list, got {type(ours).__name__}"]
        return shape_diff(recorded[0], ours[0], f"{path}[0]") if recorded and ours else []
    numeric = (int, float)
    if (
        isinstance(recorded, bool)
        or isinstance(ours, bool)
        or (isinstance(recorded, numeric) and isinstance(ours, numeric))
    ):
        same = type(recorded) is type(ours)
    else:
        same = type(recorded) is type(ours)
    return [] if same else [f"{path}: {type(recorded).__name__} vs {type(ours).__name__}"]


@pytest.fixture
def fixture_sandbox() -> Iterator[SandboxPlaneRunner]:
    runner = SandboxPlaneRunner(SandboxPlane(fixture_world(), rate_limit=60)).start()
    yield runner
    runner.stop()


@pytest.mark.parametrize("path", REST, ids=[p.stem for p in REST])
def test_sandbox_answers_like_real_plane(path: Path, fixture_sandbox: SandboxPlaneRunner) -> None:
    fx = json.loads(path.read_text())
    req, resp = fx["request"], fx["response"]
    sandbox = fixture_sandbox.sandbox
    if path.stem == "error_429":  # the 61st request within a minute
        for _ in range(60):
            sandbox.check_rate(API_KEY)
    if path.stem == "state_create_duplicate":
        world = sandbox.world
        world.create_state(
            world.projects[ORCH],
            {"name": "To Analyse", "group": "unstarted"},
            world.users_by_key[API_KEY],
        )
    if path.stem == "comment_create_external_id_duplicate":  # the first POST was answered
        world = sandbox.world
        orch = world.projects[ORCH]
        world.add_comment(
            orch,
            orch.items[ITEM_IDS[1]],
            json.loads(req["body_raw"]),
            world.users_by_key[API_KEY],
        )
    if path.stem == "project_create":
        sandbox.world.projects.clear()
    headers = {k: v for k, v in req["headers"].items() if k != "Content-Length"}
    body = req["body_raw"].encode() if req["body_raw"] is not None else None
    got = httpx.request(
        req["method"],
        fixture_sandbox.base_url + req["path"],
        params=req["query"],
        headers=headers,
        content=body,
        timeout=10,
    )

    assert got.status_code == resp["status"], got.text[:300]
    recorded_headers = {k.lower() for k, _ in resp["headers"]}
    for name in ("retry-after", "x-ratelimit-remaining", "x-ratelimit-reset"):
        assert (name in got.headers) == (name in recorded_headers), name
    if resp["body_raw"]:
        assert shape_diff(json.loads(resp["body_raw"]), got.json()) == []
    else:
        assert got.content == b""


def test_every_recorded_rest_exchange_is_replayed() -> None:
    assert len(REST) >= 40
