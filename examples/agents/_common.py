"""Shared bits of the sample agents: the PF_* contract and test markers in the issue text.

Markers (in the work item's description) let tests steer the sample agents:
`[agent:fail-<stage>]` exit 1, `[agent:tempfail-<stage>]` exit 75,
`[agent:slow-<stage>=SECONDS]` sleep first, `[review:rework]` the reviewer asks for
changes once, `[gate:fail-once]` the developer's first change fails the gate.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path


def env(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        sys.exit(f"{name} is not set: run me from planeflow")
    return value


def issue_text() -> str:
    return Path(env("PF_ISSUE_FILE")).read_text(encoding="utf-8")


def feedback() -> str:
    return Path(env("PF_FEEDBACK_FILE")).read_text(encoding="utf-8").strip()


def work_dir() -> Path:
    path = Path(env("PF_REPO_DIR")) / "docs" / "work-items" / env("PF_WORK_ITEM")
    path.mkdir(parents=True, exist_ok=True)
    return path


def obey_markers(stage: str) -> None:
    text = issue_text()
    slow = re.search(rf"\[agent:slow-{stage}=(\d+(?:\.\d+)?)\]", text)
    if slow:
        print(f"sleeping {slow.group(1)}s as the issue asks", flush=True)
        time.sleep(float(slow.group(1)))
    if f"[agent:tempfail-{stage}]" in text:
        print("temporary failure, as the issue asks", flush=True)
        sys.exit(75)
    if f"[agent:fail-{stage}]" in text:
        print("failing, as the issue asks", flush=True)
        sys.exit(1)


def report_tokens(n: int) -> None:
    print(json.dumps({"planeflow": {"tokens": n}}), flush=True)
