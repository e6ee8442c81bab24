"""Sample reviewer: asks for changes once when the issue says [review:rework]."""

from __future__ import annotations

import sys

from _common import feedback, issue_text, obey_markers, work_dir

obey_markers("review")
if "[review:rework]" in issue_text() and not (work_dir() / "reviewed-once").exists():
    (work_dir() / "reviewed-once").write_text("yes\n", encoding="utf-8")
    print("Please add a test for the empty case.")
    sys.exit(2)
print(
    "LGTM: the change matches the analysis."
    + (f" (feedback seen: {feedback()[:80]})" if feedback() else "")
)
