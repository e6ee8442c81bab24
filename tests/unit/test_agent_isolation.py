"""Agents get an allow-listed environment and, with ORCH_AGENT_USER, another unix user:
planeflow's settings (its Plane key, its webhook secret) are out of their reach."""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

import pytest

from app.agents import agent_env, run_process

SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")
PEEK = """
import os
print("ENV", sorted(k for k in os.environ if k.startswith("ORCH_")))
try:
    secrets = [v for v in open(f"/proc/{os.getppid()}/environ", "rb").read().split(b"\\0")
               if v.startswith(b"ORCH_")]
    print("PARENT", len(secrets))
except OSError as exc:
    print("PARENT unreadable", type(exc).__name__)
print("USER", os.getuid())
"""


def test_only_the_allow_list_reaches_an_agent() -> None:
    worker = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "ORCH_PLANE_API_TOKEN": "secret",
        "AWS_SECRET_ACCESS_KEY": "also secret",
        "GIT_TOKEN": "for the agent",
    }
    env = agent_env(worker, {"PF_TASK_ID": "1"}, fixed={"MODEL": "small"}, pass_env=["GIT_TOKEN"])
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "GIT_TOKEN": "for the agent",
        "MODEL": "small",
        "PF_TASK_ID": "1",
    }


@pytest.mark.skipif(
    os.geteuid() != 0 or SYSTEM_PYTHON is None,
    reason="running an agent as another user needs root (and a python it may run)",
)
def test_an_agent_run_as_another_user_cannot_read_the_workers_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_PLANE_API_TOKEN", "the-plane-key")
    monkeypatch.setenv("ORCH_PLANE_WEBHOOK_SECRET", "the-webhook-secret")
    user = pwd.getpwnam("nobody")
    worktree = tmp_path / "worktree"
    worktree.mkdir()
    for up in [tmp_path, *tmp_path.parents][:-1]:  # pytest's tmp dirs are private: let it in
        up.chmod(up.stat().st_mode | 0o011)
    (worktree / "file.txt").write_text("x")
    result = run_process(
        [str(SYSTEM_PYTHON), "-c", PEEK],  # this venv's python may live in /root
        cwd=worktree,
        env=agent_env(os.environ, {"PF_TASK_ID": "1"}),
        timeout_s=30,
        user="nobody",
    )
    assert result.ok, result.output
    assert "ENV []" in result.output
    assert "PARENT unreadable PermissionError" in result.output
    assert f"USER {user.pw_uid}" in result.output
    assert (worktree / "file.txt").stat().st_uid == user.pw_uid  # the agent may write it
