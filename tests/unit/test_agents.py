"""Agent processes: output, the tokens report line, the environment they get."""

from __future__ import annotations

import sys
from pathlib import Path

from app.agents import run_process

REPORT = (
    'import json; print("hello"); print(json.dumps({"planeflow": {"tokens": 5}})); print("bye")'
)


def test_the_tokens_line_is_counted_and_kept_out_of_the_output(tmp_path: Path) -> None:
    result = run_process([sys.executable, "-c", REPORT], cwd=tmp_path, env={}, timeout_s=30)
    assert result.ok and result.tokens == 5
    assert result.output == "hello\nbye\n"  # what comments and the timeline show
