"""`planeflow up`: the embedded default runs one work item to done, with or without
a redis-server binary."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys

import pytest

from app import embedded
from tests.conftest import REPO_ROOT


def test_up_takes_a_work_item_to_done() -> None:
    out = io.StringIO()
    assert embedded.run(timeout_s=120, out=out) == 0, out.getvalue()
    text = out.getvalue()
    assert "redis-server child" in text
    assert "DONE: DEMO-1 travelled analysis → done" in text
    assert "DEMO-1   Done" in text and "Merge feature/DEMO-1-demo-work-item-1" in text


def test_up_without_redis_server_uses_fakeredis(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = embedded.shutil.which
    monkeypatch.setattr(
        embedded.shutil, "which", lambda name: None if name == "redis-server" else real_which(name)
    )
    out = io.StringIO()
    assert embedded.run(timeout_s=120, out=out) == 0, out.getvalue()
    assert "in-process fakeredis" in out.getvalue()


@pytest.mark.parametrize("how", ["SIGTERM to the process", "Ctrl-C at the terminal"])
def test_up_keep_running_stops_cleanly_with_its_redis(how: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "up", "--keep-running"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives it
    )
    assert proc.stdout is not None
    port, lines = None, []
    for line in proc.stdout:
        lines.append(line)
        found = re.search(r"redis:\s+redis://127\.0\.0\.1:(\d+)", line)
        port = int(found.group(1)) if found else port
        if "Still running" in line:
            break
    assert port is not None, "".join(lines)
    if how.startswith("SIGTERM"):
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)  # the whole foreground group
    rest = proc.communicate(timeout=60)[0]
    log = "".join(lines) + rest
    assert "CRITICAL" not in log and "Traceback" not in log, log[-2000:]
    with socket.socket() as probe:  # its redis-server is gone with it
        assert probe.connect_ex(("127.0.0.1", port)) != 0
