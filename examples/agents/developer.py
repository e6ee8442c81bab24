"""Sample developer: a deterministic change (CHANGES.md + a file per work item).

With feedback (a failed gate, a rejection, a reviewer), it records the feedback it got
in docs/work-items/<WI>/feedback-<n>.md so you can see it arrived.

At merge, when the default branch conflicts (`PF_MERGE_CONFLICT` lists the files, the
merge is in progress in the worktree), it keeps the default branch's side of each
conflicting file and redoes its own change on top.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from _common import env, feedback, issue_text, obey_markers, report_tokens, work_dir

obey_markers("development")
repo = Path(env("PF_REPO_DIR"))
wi = env("PF_WORK_ITEM")
conflicted = [f for f in os.environ.get("PF_MERGE_CONFLICT", "").splitlines() if f]
for name in conflicted:  # the default branch's side ("theirs" in this merge) ...
    subprocess.run(["git", "checkout", "--theirs", "--", name], cwd=repo, check=True)
    subprocess.run(["git", "add", "--", name], cwd=repo, check=True)
if conflicted:
    print(f"merge conflict in {', '.join(conflicted)}: redoing the change on top", flush=True)
notes = feedback()
folder = work_dir()
if notes:
    n = len(list(folder.glob("feedback-*.md"))) + 1
    (folder / f"feedback-{n}.md").write_text(notes + "\n", encoding="utf-8")
    print(f"got feedback #{n}: {notes[:200]}")
first_try = not notes
failing = "[gate:fail-once]" in issue_text() and first_try
(repo / "gate.flag").write_text("fail\n" if failing else "pass\n", encoding="utf-8")
changes = repo / "CHANGES.md"
line = f"- {wi}: implemented\n"
existing = changes.read_text(encoding="utf-8") if changes.exists() else "# Changes\n\n"
if line not in existing:
    changes.write_text(existing + line, encoding="utf-8")
(folder / "implementation.txt").write_text(
    f"{wi} implemented by the sample developer\n", encoding="utf-8"
)
print(f"{wi}: change made")
report_tokens(450)
