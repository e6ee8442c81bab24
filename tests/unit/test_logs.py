"""Log lines: one per event on stdout; JSON with ORCH_LOG_FORMAT=json, the task's fields in."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT

SCRIPT = """
import logging
from app import logs
logs.setup("INFO", "{fmt}")
with logs.bind(work_item="DEMO-1", task_id="7", stage="analysis"):
    logging.getLogger("app.jobs").info("job %s started", 12)
try:
    raise ValueError("boom")
except ValueError:
    logging.getLogger("app.web").exception("failed")
"""


def lines(fmt: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(fmt=fmt)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stderr == ""  # stdout only
    return out.stdout.splitlines()


def test_json_lines_carry_the_task_fields() -> None:
    first, second = (json.loads(line) for line in lines("json"))
    assert first["message"] == "job 12 started" and first["level"] == "INFO"
    assert (first["work_item"], first["task_id"], first["stage"]) == ("DEMO-1", "7", "analysis")
    assert first["logger"] == "app.jobs" and first["ts"].endswith("+00:00")
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exc"]
    assert "work_item" not in second  # outside the block


def test_text_lines_carry_them_as_key_value() -> None:
    first = lines("text")[0]
    assert "work_item=DEMO-1" in first and "task_id=7" in first and "job 12 started" in first


def test_the_cli_imports_no_metrics_library_before_the_worker_sets_it_up() -> None:
    """prometheus-client picks single- or multi-process mode at import: if the CLI imported
    it before Dramatiq's middleware set the directory, the worker's metrics would vanish."""
    check = "import sys, app.cli; assert 'prometheus_client' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", check], cwd=REPO_ROOT, check=True)
