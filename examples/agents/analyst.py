"""Sample analyst: writes docs/work-items/<WI>/analysis.md from the issue text."""

from __future__ import annotations

from _common import env, issue_text, obey_markers, report_tokens, work_dir

obey_markers("analysis")
text = issue_text()
(work_dir() / "analysis.md").write_text(
    f"# Analysis of {env('PF_WORK_ITEM')}\n\n## The request\n\n{text}\n\n"
    "## Plan\n\n1. Make the change.\n2. Pass the gates.\n",
    encoding="utf-8",
)
print(f"analysis written for {env('PF_WORK_ITEM')}")
report_tokens(120)
