"""An embedded Redis: a `redis-server` child when the binary exists, else fakeredis's
in-process TCP server (`planeflow up`, the tests and the benches start it)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import redis as redislib


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """redis-server as a child process, or fakeredis's TCP server when it is absent.

    Stoppable and restartable on the same port (the tests stop Redis under a running
    receiver); `require_binary` refuses the fakeredis fallback (integration tests).
    """

    def __init__(
        self, workdir: Path, *, port: int | None = None, require_binary: bool = False
    ) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.require_binary = require_binary
        self.kind = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._fake: Any = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        binary = shutil.which("redis-server")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if binary:
            self.kind = f"redis-server child ({binary})"
            self._proc = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.workdir),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                # its own session: a Ctrl-C at the terminal reaches us, not it; we stop
                # it after the worker, so no consumer ever sees it gone
                start_new_session=True,
            )
        elif self.require_binary:
            raise RuntimeError(
                "redis-server is not installed: run `bash scripts/test`, "
                "which installs it (apt-get install redis-server)"
            )
        else:
            from fakeredis import TcpFakeServer

            self.kind = "in-process fakeredis (no redis-server binary found)"
            self._fake = TcpFakeServer(("127.0.0.1", self.port), server_type="redis")
            threading.Thread(target=self._fake.serve_forever, daemon=True).start()
        client = redislib.Redis(port=self.port)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redislib.ConnectionError:
                exited = self._proc is not None and self._proc.poll() is not None
                if time.monotonic() > deadline or exited:
                    raise RuntimeError(f"embedded Redis did not start on {self.port}") from None
                time.sleep(0.02)
        client.close()
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None
        if self._fake is not None:
            self._fake.shutdown()
            self._fake = None
