"""The spool's framing: acknowledged records survive torn writes, damage is kept aside."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from app.spool import Spool, frame, parse


def entries(n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"sha256": f"{i:064x}", "body": "é" * (i % 7)} for i in range(start, start + n)]


def test_batch_is_one_file_read_back_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(entries(3))
    spool.append(entries(2, start=3))
    assert spool.has_backlog and spool.pending() == 5
    claim = spool.claim()
    assert claim is not None and claim.entries == entries(5)
    claim.finish()
    assert spool.claim() is None and list(tmp_path.iterdir()) == []


def test_each_process_start_writes_its_own_file(tmp_path: Path) -> None:
    first, second = Spool(tmp_path), Spool(tmp_path)
    first.append(entries(1))
    second.append(entries(1, start=1))
    assert len(list(tmp_path.glob("spool-*.pfs"))) == 2


@pytest.mark.parametrize("cut", [1, 5, 9, 10, 11, 40])
def test_torn_tail_is_cut_and_the_next_event_is_not_swallowed(
    tmp_path: Path, cut: int, caplog: pytest.LogCaptureFixture
) -> None:
    dead = Spool(tmp_path)
    dead.append(entries(4))
    path = next(tmp_path.glob("spool-*.pfs"))
    torn = frame({"sha256": "never acknowledged", "body": "x" * 50})[:cut]
    with open(path, "ab") as fh:  # the receiver was killed in the middle of this write
        fh.write(torn)
    dead._current.close()  # type: ignore[union-attr]  # the process is gone: lock released

    restarted = Spool(tmp_path)  # a new file; the dead one is drained first
    restarted.append(entries(1, start=4))
    with caplog.at_level(logging.WARNING):
        claim = restarted.claim()
    assert claim is not None and claim.entries == entries(4)
    assert "torn" in caplog.text
    claim.finish()
    claim = restarted.claim()
    assert claim is not None and claim.entries == entries(1, start=4)


def test_damage_inside_a_file_is_kept_aside_not_dropped(tmp_path: Path) -> None:
    records = [frame(e) for e in entries(3)]
    damaged = bytearray(records[1])
    damaged[-1] ^= 0xFF  # a flipped bit in the middle record's payload
    path = tmp_path / "spool-00000000000000000001-host-1-x.pfs"
    path.write_bytes(records[0] + bytes(damaged) + records[2])
    claim = Spool(tmp_path).claim()
    assert claim is not None and claim.entries == entries(1)
    aside = path.with_name(path.name + ".corrupt")
    assert aside.read_bytes() == bytes(damaged) + records[2]


def test_a_file_held_by_a_live_process_is_left_to_it(tmp_path: Path) -> None:
    alive = Spool(tmp_path)
    alive.append(entries(2))
    other = Spool(tmp_path)
    assert other.claim() is None  # flock held by `alive`
    claim = alive.claim()  # its owner seals and drains it
    assert claim is not None and len(claim.entries) == 2
    alive.append(entries(1, start=2))  # new appends go to a new file meanwhile
    claim.finish()
    assert [p.name for p in tmp_path.iterdir()] != [] and alive.pending() == 1


def test_legacy_line_files_are_still_drained(tmp_path: Path) -> None:
    legacy = tmp_path / "spool-host-1.jsonl"
    legacy.write_text("\n".join(json.dumps(e) for e in entries(2)) + "\n{torn")
    claim = Spool(tmp_path).claim()
    assert claim is not None and claim.entries == entries(2)


def test_parse_stops_at_a_bad_magic() -> None:
    data = frame({"a": 1}) + b"XX" + b"\0" * 20
    parsed = parse(data)
    assert parsed.entries == [{"a": 1}] and parsed.corrupt
