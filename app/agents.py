"""Agent and gate processes: argv only, own process group, time limit, bounded output.

A command runs with cwd = the task's worktree and an allow-listed environment: PATH,
HOME, the locale, the PF_* variables (DESIGN 7.5), its own `env` values and the worker's
variables it names in `pass_env` — never planeflow's settings. With ORCH_AGENT_USER it
runs as that unix user, so the worker's /proc/<pid>/environ is out of its reach.
On time-out or cancellation the whole process group gets SIGTERM, then SIGKILL. The
last `tail_bytes` of combined stdout/stderr are kept; a JSON line
`{"planeflow": {"tokens": N}}` on stdout reports tokens used.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_REWORK = 2
EXIT_TEMPORARY = 75


@dataclass(frozen=True)
class ProcessResult:
    exit_code: int | None  # None when killed for time-out or cancellation
    timed_out: bool
    cancelled: bool
    output: str  # the tail
    duration_s: float
    tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    def describe(self) -> str:
        if self.cancelled:
            return "cancelled"
        if self.timed_out:
            return f"timed out after {self.duration_s:.0f}s"
        return f"exit {self.exit_code} after {self.duration_s:.1f}s"


# What an agent or gate gets of the worker's environment; nothing else unless the
# command names it (`pass_env`), never planeflow's own settings (ORCH_*: its secrets).
ALLOWED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")


def agent_env(
    base: Mapping[str, str],
    extra: Mapping[str, str],
    *,
    fixed: Mapping[str, str] | None = None,
    pass_env: Sequence[str] = (),
) -> dict[str, str]:
    """The allow-listed part of `base`, the variables named in `pass_env`, the command's
    `fixed` values, then `extra` (the PF_* variables)."""
    env = {k: base[k] for k in ALLOWED_ENV if k in base}
    env.update({k: base[k] for k in pass_env if k in base and not k.startswith("ORCH_")})
    env.update(fixed or {})
    env.update(extra)
    return env


def give_to(name: str, path: Path) -> None:
    """Make the tree at `path` belong to the unix user `name` (it runs agents there)."""
    account = pwd.getpwnam(name)
    for root, dirs, files in os.walk(path):
        for entry in [root, *(os.path.join(root, n) for n in dirs + files)]:
            with contextlib.suppress(FileNotFoundError):
                os.lchown(entry, account.pw_uid, account.pw_gid)


def as_user(name: str, cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """Popen arguments to run as the unix user `name` (the worker is root): the working
    tree made theirs, HOME theirs."""
    account = pwd.getpwnam(name)
    give_to(name, cwd)
    env["HOME"] = account.pw_dir
    env.setdefault("USER", name)
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float,
    tail_bytes: int = 64 * 1024,
    should_stop: Callable[[], bool] | None = None,
    kill_grace_s: float = 5.0,
    on_start: Callable[[int], None] | None = None,
    user: str | None = None,
) -> ProcessResult:
    """Run `argv`; with `user`, as that unix user (ORCH_AGENT_USER)."""
    started = time.monotonic()
    env = dict(env)
    try:
        identity = as_user(user, cwd, env) if user else {}
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **identity,
        )
    except (OSError, KeyError) as exc:  # not found, not executable, no such user
        return ProcessResult(127, False, False, f"cannot start {argv[0]!r}: {exc}", 0.0)
    if on_start is not None:
        on_start(proc.pid)
    chunks: deque[bytes] = deque()
    size = [0]
    tokens = [0]

    def reader() -> None:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            if _count_tokens(line, tokens):
                continue  # planeflow's own report line: not the agent's output
            chunks.append(line)
            size[0] += len(line)
            while size[0] > tail_bytes and len(chunks) > 1:
                size[0] -= len(chunks.popleft())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    timed_out = cancelled = False
    while True:
        try:
            proc.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() - started > timeout_s:
                timed_out = True
            elif should_stop is not None and should_stop():
                cancelled = True
            else:
                continue
            _kill_group(proc, kill_grace_s)
            break
    thread.join(timeout=5)
    output = b"".join(chunks)[-tail_bytes:].decode("utf-8", errors="replace")
    code = None if (timed_out or cancelled) else proc.returncode
    return ProcessResult(code, timed_out, cancelled, output, time.monotonic() - started, tokens[0])


def _kill_group(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _count_tokens(line: bytes, tokens: list[int]) -> bool:
    """Count a `{"planeflow": {"tokens": N}}` line; True when the line was one."""
    if b'"planeflow"' not in line:
        return False
    try:
        data = json.loads(line)
        tokens[0] += int(data["planeflow"]["tokens"])
    except (ValueError, KeyError, TypeError):
        return False
    return True
