"""The receiver's local spool: verified events kept on disk while Redis is unreachable.

Real Plane counts any HTTP answer as delivered, so an event the receiver cannot store
in Redis must not be dropped: it is appended (one JSON line, fsync'ed) to this
process's spool file and the request is answered 202. `drain` replays spool files in
order into Redis. Files are locked with `flock`, so a drainer never reads a line
being written, and a restarted process also drains files that dead processes left.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Entry = dict[str, Any]


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"spool-{socket.gethostname()}-{os.getpid()}.jsonl"
        self._lock = threading.Lock()

    def append(self, entry: Entry) -> None:
        """Durably add one entry (written and fsync'ed before this returns)."""
        line = json.dumps(entry, separators=(",", ":")).encode("utf-8") + b"\n"
        with self._lock, open(self.path, "ab") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def files(self) -> list[Path]:
        return sorted(p for p in self.directory.glob("spool-*.jsonl") if p.stat().st_size > 0)

    def pending(self) -> int:
        """Number of spooled entries not yet drained (all files)."""
        total = 0
        for path in self.files():
            with open(path, "rb") as fh:
                total += sum(1 for line in fh if line.strip())
        return total

    def drain(self, handle: Callable[[Entry], None]) -> int:
        """Feed every spooled entry, oldest first, to `handle`; stop at the first failure.

        Entries handled are removed; the failed one and those after it stay, in order.
        Returns the number handled.
        """
        done = 0
        with self._lock:
            for path in self.files():
                handled, finished = self._drain_file(path, handle)
                done += handled
                if not finished:
                    break
        return done

    def _drain_file(self, path: Path, handle: Callable[[Entry], None]) -> tuple[int, bool]:
        with open(path, "r+b") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0, True  # another process is draining or writing it
            try:
                lines = [line for line in fh.read().splitlines() if line.strip()]
                handled = 0
                for line in lines:
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        log.error("spool %s: dropping unreadable line (%d bytes)", path, len(line))
                        handled += 1
                        continue
                    try:
                        handle(entry)
                    except Exception as exc:
                        log.warning(
                            "spool %s: drain paused after %d entries: %s", path, handled, exc
                        )
                        self._rewrite(fh, lines[handled:])
                        return handled, False
                    handled += 1
                self._rewrite(fh, [])
                return handled, True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @staticmethod
    def _rewrite(fh: Any, lines: list[bytes]) -> None:
        fh.seek(0)
        fh.truncate()
        if lines:
            fh.write(b"\n".join(lines) + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
