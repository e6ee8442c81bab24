"""The sandbox's webhook deliveries look like real Plane's (recorded) deliveries."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from app.sandbox.plane_runner import BOT_KEY, SandboxPlaneRunner
from tests.conftest import FIXTURES
from tests.contract.test_sandbox_contract import shape_diff

SECRET = "plane_wh_fedcba9876543210fedcba9876543210"


class Capture:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.event = threading.Event()
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                capture.got.append((dict(self.headers.items()), body))
                self.send_response(capture.status)
                self.end_headers()
                capture.event.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/plane-webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.got]


@pytest.fixture
def capture() -> Iterator[Capture]:
    cap = Capture()
    yield cap
    cap.server.shutdown()


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def api(runner: SandboxPlaneRunner) -> httpx.Client:
    return httpx.Client(base_url=runner.base_url, headers={"X-API-Key": BOT_KEY}, timeout=10)


def demo(runner: SandboxPlaneRunner) -> tuple[str, str, dict[str, str]]:
    project = next(iter(runner.sandbox.world.projects.values()))
    item = next(iter(project.items))
    return project.id, item, {s.name: s.id for s in project.states.values()}


def test_api_patch_of_two_fields_sends_two_signed_deliveries(
    sandbox_plane: SandboxPlaneRunner, capture: Capture
) -> None:
    sandbox_plane.sandbox.sender.configure(capture.url, SECRET)
    pid, iid, states = demo(sandbox_plane)
    with api(sandbox_plane) as http:
        path = f"/api/v1/workspaces/acme/projects/{pid}/work-items/{iid}/"
        assert (
            http.patch(
                path, json={"state": states["In Progress"], "priority": "urgent"}
            ).status_code
            == 200
        )
    sandbox_plane.drain_webhooks()

    bodies = capture.bodies()
    assert [b["activity"]["field"] for b in bodies] == ["state", "priority"]
    assert bodies[0]["activity"]["new_value"] == states["In Progress"]
    assert bodies[0]["activity"]["actor"]["display_name"] == "planeflow-bot"
    real = recorded("webhook_issue_updated_state")["delivery"]
    assert shape_diff(real["body_json"], bodies[0]) == []
    for headers, body in capture.got:
        assert headers["X-Plane-Event"] == "issue"
        assert headers["User-Agent"] == "Autopilot"
        expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Plane-Signature"] == expected
    assert len({h["X-Plane-Delivery"] for h, _ in capture.got}) == 2
    # Python json.dumps layout, like real Plane's worker
    assert b'"event": "issue", "action": "updated"' in capture.got[0][1]


def test_web_app_move_says_state_id(sandbox_plane: SandboxPlaneRunner, capture: Capture) -> None:
    sandbox_plane.sandbox.sender.configure(capture.url, SECRET)
    pid, iid, _ = demo(sandbox_plane)
    httpx.post(
        sandbox_plane.base_url + "/_sandbox/move",
        json={"project": pid, "item": iid, "state": "To Analyse"},
    ).raise_for_status()
    sandbox_plane.drain_webhooks()
    (body,) = capture.bodies()
    assert body["activity"]["field"] == "state_id"
    assert body["activity"]["actor"]["display_name"] == "ada"
    assert body["data"]["state"]["name"] == "To Analyse"


def test_noop_patch_and_delete_send_nothing(
    sandbox_plane: SandboxPlaneRunner, capture: Capture
) -> None:
    sandbox_plane.sandbox.sender.configure(capture.url, SECRET)
    pid, iid, _states = demo(sandbox_plane)
    current = sandbox_plane.sandbox.world.projects[pid].items[iid].state_id
    with api(sandbox_plane) as http:
        path = f"/api/v1/workspaces/acme/projects/{pid}/work-items/{iid}/"
        assert http.patch(path, json={"state": current}).status_code == 200
        assert http.delete(path).status_code == 204
    sandbox_plane.drain_webhooks()
    assert capture.got == []


def test_comment_delivery_matches_recording(
    sandbox_plane: SandboxPlaneRunner, capture: Capture
) -> None:
    sandbox_plane.sandbox.sender.configure(capture.url, SECRET)
    pid, iid, _ = demo(sandbox_plane)
    with api(sandbox_plane) as http:
        http.post(
            f"/api/v1/workspaces/acme/projects/{pid}/work-items/{iid}/comments/",
            json={"comment_html": "<p>hi</p>"},
        ).raise_for_status()
    sandbox_plane.drain_webhooks()
    (body,) = capture.bodies()
    real = recorded("webhook_comment_created")["delivery"]["body_json"]
    assert shape_diff(real, body) == []


def test_any_http_answer_counts_as_delivered(sandbox_plane: SandboxPlaneRunner) -> None:
    cap = Capture(status=500)
    try:
        sandbox_plane.sandbox.sender.configure(cap.url, SECRET)
        pid, iid, _ = demo(sandbox_plane)
        httpx.post(
            sandbox_plane.base_url + "/_sandbox/move",
            json={"project": pid, "item": iid, "state": "Todo"},
        ).raise_for_status()
        sandbox_plane.drain_webhooks()
        assert len(cap.got) == 1
        (sent,) = sandbox_plane.sandbox.sender.sent
        assert (sent.status, sent.attempts) == (500, 1)
    finally:
        cap.server.shutdown()


def test_connection_errors_are_retried_with_identical_bytes(
    sandbox_plane: SandboxPlaneRunner,
) -> None:
    sandbox_plane.sandbox.sender.configure("http://127.0.0.1:9/nothing-listens", SECRET)
    pid, iid, _ = demo(sandbox_plane)
    httpx.post(
        sandbox_plane.base_url + "/_sandbox/move",
        json={"project": pid, "item": iid, "state": "Todo"},
    ).raise_for_status()
    sandbox_plane.drain_webhooks()
    (sent,) = sandbox_plane.sandbox.sender.sent
    assert sent.attempts == 3 and sent.status is None  # 1 + 2 retries in the fixture
    assert len(set(sent.delivery_ids)) == 3  # a new delivery id per attempt
