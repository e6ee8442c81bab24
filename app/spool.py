"""The receiver's local spool: verified events kept on disk while Redis cannot take them.

Real Plane counts any HTTP answer as delivered, so an event the receiver cannot store
in Redis is written here before it is acknowledged. Each record is framed (magic,
length, CRC-32 of the payload), a whole batch is written with one `write` and made
durable with one `fsync` before any request of the batch is answered.

Every process start writes its own file (`spool-<ns>-<host>-<pid>-<token>.pfs`, held
with `flock` while open), so a restarted receiver never appends after a record that a
killed one left half written. A file is read back whole by `claim`: a torn tail (the
process died mid-write, so nothing in it was acknowledged) is cut off; a damaged record
with data after it is kept aside in `<file>.corrupt` for a human, never dropped
silently. Files of dead processes are claimed by whichever receiver drains next.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

Entry = dict[str, Any]
MAGIC = b"PF"
_HEADER = struct.Struct(">2sII")  # magic, payload length, CRC-32 of the payload
SUFFIX = ".pfs"
LEGACY_SUFFIX = ".jsonl"  # one JSON object per line, written by planeflow before framing


def frame(entry: Entry) -> bytes:
    payload = json.dumps(entry, separators=(",", ":")).encode("utf-8")
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


@dataclass
class Parsed:
    entries: list[Entry] = field(default_factory=list)
    good_bytes: int = 0  # offset just past the last whole, intact record
    torn: bool = False  # the file ends inside a record (cut it)
    corrupt: bool = False  # a damaged record with more data after it (keep it aside)


def parse(data: bytes) -> Parsed:
    """Read framed records until the end or the first record that is not whole and intact."""
    out = Parsed()
    pos, size = 0, len(data)
    while pos < size:
        if size - pos < _HEADER.size:
            out.torn = True
            break
        magic, length, crc = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        if magic != MAGIC:
            out.corrupt = True
            break
        if end > size:
            out.torn = True
            break
        payload = data[pos + _HEADER.size : end]
        if zlib.crc32(payload) != crc:
            # The last record of the file: a write that did not finish. Inside: damage.
            out.torn, out.corrupt = end == size, end != size
            break
        try:
            out.entries.append(json.loads(payload))
        except ValueError:
            out.corrupt = True
            break
        pos = end
        out.good_bytes = pos
    return out


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Claim:
    """A spool file taken for draining: its entries, and the `flock` that keeps it ours."""

    def __init__(self, path: Path, fh: IO[bytes], entries: list[Entry]) -> None:
        self.path = path
        self.entries = entries
        self._fh = fh

    def finish(self) -> None:
        """Every entry is in Redis: remove the file."""
        self.path.unlink(missing_ok=True)
        _fsync_dir(self.path.parent)
        self._fh.close()

    def release(self) -> None:
        """Draining stopped (Redis failed again): keep the file for the next pass."""
        self._fh.close()


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._current: IO[bytes] | None = None
        self._current_path: Path | None = None
        self._token = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._backlog = bool(self.files())

    # -- writing ---------------------------------------------------------------------
    def append(self, entries: Iterable[Entry]) -> None:
        """Durably add entries: one write and one fsync for the whole batch."""
        data = b"".join(frame(e) for e in entries)
        with self._lock:
            fh = self._current or self._open_new()
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            self._backlog = True

    def _open_new(self) -> IO[bytes]:
        path = self.directory / f"spool-{time.time_ns():020d}-{self._token}{SUFFIX}"
        fh = open(path, "a+b")  # noqa: SIM115 - kept open (and locked) until sealed
        fcntl.flock(fh, fcntl.LOCK_EX)
        _fsync_dir(self.directory)
        self._current, self._current_path = fh, path
        return fh

    # -- reading ---------------------------------------------------------------------
    @property
    def has_backlog(self) -> bool:
        """Whether events may wait here (new events must then queue behind them)."""
        return self._backlog

    def mark_drained(self) -> None:
        """Called by the drainer, under the ingest lock, when `claim` found nothing."""
        self._backlog = False

    def files(self) -> list[Path]:
        """Spool files, oldest first (names start with their creation time)."""
        found = [
            *self.directory.glob(f"spool-*{SUFFIX}"),
            *self.directory.glob(f"spool-*{LEGACY_SUFFIX}"),
        ]
        return sorted(found, key=lambda p: p.name)

    def pending(self) -> int:
        """Entries waiting in all spool files (for /readyz and /metrics)."""
        total = 0
        for path in self.files():
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            if path.suffix == LEGACY_SUFFIX:
                total += sum(1 for line in data.splitlines() if line.strip())
            else:
                total += len(parse(data).entries)
        return total

    def claim(self) -> Claim | None:
        """The oldest spool file no live process holds, read whole; None when there is none.

        This process's own file is sealed first (new appends go to a new file).
        """
        for path in self.files():
            with self._lock:
                if path == self._current_path and self._current is not None:
                    fh, self._current, self._current_path = self._current, None, None
                else:
                    try:
                        fh = open(path, "r+b")  # noqa: SIM115 - handed to the Claim
                    except FileNotFoundError:
                        continue
                    try:
                        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        fh.close()  # a live process writes or drains it
                        continue
            if not path.exists():  # drained and removed by another process meanwhile
                fh.close()
                continue
            entries = self._read(path, fh)
            return Claim(path, fh, entries)
        return None

    def _read(self, path: Path, fh: IO[bytes]) -> list[Entry]:
        fh.seek(0)
        data = fh.read()
        if path.suffix == LEGACY_SUFFIX:
            return _read_legacy(path, data)
        parsed = parse(data)
        if parsed.torn or parsed.corrupt:
            rest = data[parsed.good_bytes :]
            if parsed.corrupt:
                aside = path.with_name(path.name + ".corrupt")
                aside.write_bytes(rest)
                log.error(
                    "spool %s: damaged record at byte %d; %d byte(s) kept in %s for inspection",
                    path.name,
                    parsed.good_bytes,
                    len(rest),
                    aside.name,
                )
            else:
                log.warning(
                    "spool %s: cut a torn last record (%d byte(s), never acknowledged)",
                    path.name,
                    len(rest),
                )
            fh.truncate(parsed.good_bytes)
            fh.flush()
            os.fsync(fh.fileno())
        return parsed.entries


def _read_legacy(path: Path, data: bytes) -> list[Entry]:
    entries = []
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except ValueError:
            log.error("spool %s: unreadable line (%d bytes) skipped", path.name, len(line))
    return entries
