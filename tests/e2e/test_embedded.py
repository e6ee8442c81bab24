"""`planeflow up`: the embedded default runs one work item to done, with or without
a redis-server binary."""

from __future__ import annotations

import io

import pytest

from app import embedded


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
