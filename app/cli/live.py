"""Live terminal views: `planeflow tasks --watch` and `planeflow explain --follow`.

`tasks --watch` redraws the board (the dashboard's read model, `app.board`) every
`--interval` seconds on a terminal; when its output is not a terminal it prints the
table again only when it changed, so it can feed a log. `explain --follow` prints a
task's decisions and then each new one as it is recorded (a blocking stream read),
waiting for the task to appear if the work item has not started yet. Ctrl-C ends both.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import TextIO

from app.board import Board
from app.cli.formatting import format_table
from app.config import Settings, load_registry
from app.domain.errors import ConfigError
from app.domain.models import Task
from app.projects import Registry
from app.queue_state import QueueState
from app.store import Store

CLEAR = "\x1b[H\x1b[2J"


def watch_tasks(settings: Settings, store: Store, interval_s: float, out: TextIO) -> int:
    try:
        registry = load_registry(settings.projects_file)
    except ConfigError:  # the board still shows; only the projects' budgets are unknown
        registry = Registry(projects={})
    board = Board(settings, store, registry, QueueState(store.r, store.keys))
    tty = out.isatty()
    last = ""
    while True:
        # Piped, the ages are left out: the board is printed again only when it changed.
        text = render_board(board.snapshot(), ages=tty)
        if tty:
            now = datetime.now(UTC).strftime("%H:%M:%S")
            out.write(f"{CLEAR}planeflow tasks  (every {interval_s:g}s, {now} UTC; Ctrl-C stops)\n")
            out.write(text + "\n")
        elif text != last:
            out.write(text + "\n\n")
        out.flush()
        last = text
        time.sleep(interval_s)


def render_board(snap: dict[str, object], *, ages: bool = True) -> str:
    now = time.time()
    rows = [("WORK ITEM", "STAGE", "PROJECT", "ACTIVE JOB", "AGE", "ATTEMPTS", "TITLE")]
    tasks: dict[str, list[dict[str, object]]] = snap["tasks"]  # type: ignore[assignment]
    for stage in snap["stages"]:  # type: ignore[attr-defined]
        for task in tasks[stage]:
            job = task["active_job"]
            job_text = f"{job['id']} {job['state']}" if isinstance(job, dict) else "-"
            age = now - datetime.fromisoformat(str(task["created_at"])).timestamp()
            rows.append(
                (
                    str(task["work_item"]),
                    str(task["stage"]),
                    str(task["project"]),
                    job_text,
                    _age(age) if ages else "-",
                    str(task["attempts"]),
                    str(task["title"])[:50],
                )
            )
    counts: dict[str, int] = snap["counts"]  # type: ignore[assignment]
    summary = ", ".join(f"{stage} {n}" for stage, n in counts.items() if n) or "no tasks"
    queues = ", ".join(
        f"{q['queue']} {q['ready']}/{q['delayed']}/{q['dead']}"
        for q in snap["queues"]  # type: ignore[attr-defined]
    )
    return f"{format_table(rows)}\n{summary}\nqueues ready/delayed/dead: {queues}"


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d"


def follow_timeline(store: Store, work_item: str, out: TextIO) -> int:
    task = store.find_task(work_item)
    if task is None:
        print(f"waiting for a task for {work_item} (move it to To Analyse)…", file=sys.stderr)
        while task is None:
            time.sleep(1.0)
            task = store.find_task(work_item)
    print_header(task, out)
    last = "0-0"
    while True:
        for entry in store.timeline_after(task.id, last):
            out.write(line(entry) + "\n")
            last = entry["id"]
        out.flush()


def print_header(task: Task, out: TextIO) -> None:
    blocked = f", blocked: {task.blocked_reason}" if task.blocked_reason else ""
    out.write(
        f"{task.work_item_id} (task {task.id}, {task.project}): stage {task.stage.value}{blocked}\n"
    )


def line(entry: dict[str, str]) -> str:
    return f"  {entry.get('ts', '')[:19]}  {entry.get('kind', ''):<10} {entry.get('message', '')}"
