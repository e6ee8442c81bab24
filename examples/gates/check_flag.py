"""Sample quality gate: fails while the worktree's gate.flag says "fail"."""

from __future__ import annotations

import sys
from pathlib import Path

flag = Path("gate.flag")
state = flag.read_text(encoding="utf-8").strip() if flag.exists() else "pass"
if state == "fail":
    print("gate.flag says fail: the empty case is not handled")
    sys.exit(1)
print("gate.flag ok")
