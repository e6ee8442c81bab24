"""`planeflow web` SIGKILLed while it spools: no acknowledged event is lost on restart."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
import redis

from app.plane.webhooks import signature
from app.spool import frame
from tests.conftest import REPO_ROOT, RedisServer, free_port
from tests.helpers import SECRET

pytestmark = pytest.mark.redis_server
PROJECT = "5f0c1d2e-0000-4000-8000-00000000de00"


def delivery(n: int) -> bytes:
    return json.dumps(
        {
            "event": "issue",
            "action": "updated",
            "webhook_id": "w",
            "workspace_id": "ws",
            "data": {"id": str(uuid.UUID(int=n + 1)), "project": PROJECT, "n": n},
            "activity": {"field": "state", "actor": {"id": "human"}},
        }
    ).encode()


def start_web(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "web", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            assert proc.poll() is None, "web exited"
            try:
                async with http.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("web did not start")


async def test_kill_while_spooling_then_restart_loses_no_acknowledged_event(
    tmp_path: Path,
) -> None:
    (tmp_path / "projects.toml").write_text(
        f'[projects.demo]\nplane_project_id = "{PROJECT}"\nrepo = "r"\nwork_item_prefix = "D"\n'
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ORCH_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens: spool
        "ORCH_PROJECTS_FILE": str(tmp_path / "projects.toml"),
        "ORCH_PLANE_WEBHOOK_SECRET": SECRET,
        "ORCH_SPOOL_DIR": str(tmp_path / "spool"),
    }
    log = tmp_path / "web.log"
    web = start_web(env, port, log)
    acknowledged: set[str] = set()
    await wait_up(url, web)

    async def send(n: int, http: aiohttp.ClientSession) -> None:
        body = delivery(n)
        try:
            async with http.post(
                url + "/webhooks/plane",
                data=body,
                headers={"X-Plane-Signature": signature(SECRET, body)},
            ) as resp:
                if resp.status == 202 and (await resp.json())["spooled"]:
                    acknowledged.add(signature(SECRET, body))
        except aiohttp.ClientError:
            pass  # the receiver died before answering: not acknowledged

    async def killer() -> None:
        while len(acknowledged) < 150:
            await asyncio.sleep(0.001)
        web.send_signal(signal.SIGKILL)  # while other requests are being spooled

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(killer(), *(send(n, http) for n in range(600)))
    web.wait(10)
    assert 150 <= len(acknowledged) < 600

    # The kill may have landed between two writes; make sure the dead process's file
    # also ends in a torn record, as a kill in the middle of a write leaves it.
    (dead_file,) = (tmp_path / "spool").glob("spool-*.pfs")
    with dead_file.open("ab") as fh:
        fh.write(frame({"digest": "never acknowledged"})[:17])

    server = RedisServer(free_port(), tmp_path / "redis")
    server.start()
    try:
        restarted = start_web({**env, "ORCH_REDIS_URL": server.url}, port, log)
        try:
            await wait_up(url, restarted)
            fresh = delivery(10_000)
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    url + "/webhooks/plane",
                    data=fresh,
                    headers={"X-Plane-Signature": signature(SECRET, fresh)},
                ) as resp,
            ):
                assert resp.status == 202
            acknowledged.add(signature(SECRET, fresh))
            client = redis.Redis.from_url(server.url, decode_responses=True)
            deadline = time.monotonic() + 30
            stored: set[str] = set()
            while time.monotonic() < deadline and not acknowledged <= stored:
                stored = {f["digest"] for _, f in client.xrange("pf:events")}
                await asyncio.sleep(0.1)
            assert acknowledged - stored == set(), "acknowledged events lost"
            assert "never acknowledged" not in stored
            assert client.llen("dramatiq:events") == len(stored)  # each one queued once
            assert not list((tmp_path / "spool").glob("spool-*.pfs"))
        finally:
            restarted.terminate()
            restarted.wait(10)
    finally:
        server.stop()
    assert "torn" in log.read_text()
