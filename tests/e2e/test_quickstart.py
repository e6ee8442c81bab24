"""The README's quickstart block, run as written in a fresh clone, takes DEMO-1 to Code
Review: setup, honcho, `planeflow init --sandbox`, redis-server, the sandbox Plane and
the Procfile's processes. Only its ports are changed to free ones."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from app.embedded_redis import free_port
from tests.conftest import REPO_ROOT


def quickstart() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- quickstart -->\n```bash\n(.*?)```\n<!-- /quickstart -->", readme, re.S)
    assert found, "the README lost its quickstart block"
    return found.group(1)


def history(port: int) -> list[str]:
    url = f"http://127.0.0.1:{port}/_sandbox/history?item=DEMO-1"
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return list(json.loads(answer.read()))
    except OSError:
        return []


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_the_readme_quickstart_reaches_code_review(tmp_path: Path) -> None:
    clone = tmp_path / "planeflow"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(clone)], check=True)
    redis, plane, web = free_port(), free_port(), free_port()
    script = quickstart().replace("6379", str(redis)).replace("8100", str(plane))
    script = script.replace("5000", str(web))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCH_", "VIRTUAL_ENV"))}
    env["PORT"] = str(web)  # honcho numbers ports from 5000: the web's is given here
    log = (tmp_path / "quickstart.log").open("wb")
    proc = subprocess.Popen(
        ["bash", "-c", script + "\nwait\n"],
        cwd=clone,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 420
        while "Code Review" not in history(plane):
            assert time.monotonic() < deadline, (tmp_path / "quickstart.log").read_text()[-3000:]
            assert proc.poll() is None, (tmp_path / "quickstart.log").read_text()[-3000:]
            time.sleep(1)
        logs = (clone / "planeflow.log").read_text()
        assert "CRITICAL" not in logs and "Traceback" not in logs, logs[-3000:]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run(
            ["redis-cli", "-p", str(redis), "shutdown", "nosave"], capture_output=True, check=False
        )
