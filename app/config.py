"""Settings (environment, prefix `ORCH_`) and loading of the project registry.

This is the only module that reads the environment. One `Settings` object is built
at start and passed explicitly to whatever needs it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.domain.errors import ConfigError
from app.keys import Keys
from app.projects import Registry


class Settings(BaseSettings):
    """Process-wide settings. Secrets are SecretStr so they never reach a log line."""

    model_config = SettingsConfigDict(env_prefix="ORCH_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    log_format: Literal["text", "json"] = "text"  # json: one JSON object per line
    key_prefix: str = "pf:"
    projects_file: Path = Path("projects.toml")

    plane_base_url: str = "http://127.0.0.1:8100"
    plane_api_token: SecretStr = SecretStr("")
    plane_workspace: str = "acme"
    plane_webhook_secret: SecretStr = SecretStr("")
    plane_user_id: str | None = None  # our own Plane user; discovered if unset
    plane_rate_per_min: int = 50
    plane_timeout_s: float = 10.0
    plane_retries: int = 3
    plane_states_ttl_s: int = 300

    gitea_base_url: str | None = None
    gitea_token: SecretStr = SecretStr("")
    gitea_webhook_secret: SecretStr = SecretStr("")

    # Agents, gates and deploy commands run as this unix user (the worker starts as
    # root), so they cannot read the worker's environment (its secrets) from /proc.
    agent_user: str | None = None
    repos_dir: Path = Path("var/repos")
    spool_dir: Path = Path("var/spool")

    web_host: str = "127.0.0.1"
    web_port: int = 8080
    # The dashboard (`/` on `web`): with a token, every page and endpoint asks for it;
    # without one it is served only when `web` listens on a loopback address.
    dashboard_token: SecretStr = SecretStr("")
    plane_web_url: str | None = None  # links to work items (default: plane_base_url)
    webhook_max_body: int = 1024 * 1024
    webhook_read_idle_s: float = 10.0  # no body byte for this long -> 408
    ingest_redis_timeout_s: float = 0.5  # a hung Redis sends webhooks to the spool this fast
    events_maxlen: int = 100_000
    retention_days: float = 0.0  # finished tasks older than this are purged (0: kept)
    delivery_ttl_s: int = 7 * 24 * 3600
    # A human's webhook received this recently serves as the work item's state and text
    # (no Plane read); an older one, a replay, a recheck and the reconciler read Plane.
    snapshot_fresh_s: float = 120.0

    lock_ttl_s: float = 30.0
    lock_wait_s: float = 10.0

    worker_prometheus: bool = True  # Dramatiq's exporter (dramatiq_prom_port, default 9191)

    reconcile_interval_s: int = 60
    reconcile_grace_s: int = 120  # younger changes are delayed, not lost: leave them
    reconcile_margin_s: int = 300  # incremental scans reach back this far past the watermark
    # The reconciler keeps to this share of ORCH_PLANE_RATE_PER_MIN on average, stretching
    # its pass interval when there are many projects.
    reconcile_budget_share: float = 0.4
    reconcile_page_size: int = 1000  # the rolling scan reads a page at a time
    reconcile_cover_s: float = 900.0  # the rolling scan sees every item once in this long
    reconcile_lock_ttl_s: int = 300
    scheduler_tick_s: float = 15.0  # how often the leader offers due passes
    webhook_silence_s: int = 600  # replays but no webhook this long: webhook likely disabled
    item_check_after_s: int = 600  # a live task's work item not seen this long is looked up
    item_checks_per_pass: int = 5  # at most this many look-ups per project pass
    deleted_confirm_s: float = 60.0  # a second 404 this much later cancels the task
    job_lost_margin_s: float = 120.0
    max_jobs: int = 8  # running jobs in total
    max_jobs_per_project: int = 4
    max_jobs_per_repo: int = 2
    cap_wait_s: float = 5.0  # a job without a free slot is looked at again after this
    job_retry_base_s: float = 5.0  # backoff base for agent retries (75 / failures)
    agent_output_tail_kib: int = 64
    job_max_attempts: int = 3  # a job lost this many times blocks its task
    job_resend_after_s: float = 300.0  # a queued job not started this long is sent again

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"{value!r} is not a Redis URL (redis://host:port/db, rediss://..., unix://...)"
            )
        return value

    @field_validator("projects_file", "repos_dir", "spool_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        """Relative paths are taken from the start directory, once: agents and git run in
        other working directories (a worktree, a bare clone), where they would differ."""
        value = value.expanduser()
        return value if value.is_absolute() else Path.cwd() / value

    @property
    def keys(self) -> Keys:
        return Keys(self.key_prefix)


def load_registry(path: Path) -> Registry:
    """Read and validate the TOML registry; raise ConfigError naming file, project, field."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found (set ORCH_PROJECTS_FILE)") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return Registry.model_validate(anchored(raw, path.resolve().parent))
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation_error(exc)}") from exc


def anchored(raw: Any, base: Path) -> Any:
    """The registry with its relative paths made absolute against `base` (the registry
    file's directory): a `repo` that is a local path, and every argv element of agents,
    gates and deploy that starts with `./` or `../` (their working directory is a
    worktree, where a relative path means nothing)."""
    projects = raw.get("projects") if isinstance(raw, dict) else None
    if not isinstance(projects, dict):
        return raw
    for body in projects.values():
        if not isinstance(body, dict):
            continue
        repo = body.get("repo")
        if isinstance(repo, str) and repo and _is_local_path(repo):
            body["repo"] = str((base / repo).resolve())
        commands = [*(body.get("agents") or {}).values(), *(body.get("gates") or [])]
        for command in commands:
            if isinstance(command, dict):
                command["argv"] = _anchor_argv(command.get("argv"), base)
        body["deploy"] = _anchor_argv(body.get("deploy"), base)
        if body["deploy"] is None:
            del body["deploy"]
    return raw


def _is_local_path(repo: str) -> bool:
    """Not a URL (`https://...`, `ssh://...`) nor scp-like (`git@host:path`)."""
    if "://" in repo:
        return False
    head = repo.split("/", 1)[0]
    return ":" not in head


def _anchor_argv(argv: Any, base: Path) -> Any:
    if not isinstance(argv, list):
        return argv
    return [
        str((base / a).resolve()) if isinstance(a, str) and a.startswith(("./", "../")) else a
        for a in argv
    ]


def describe_validation_error(exc: ValidationError, env_prefix: str = "") -> str:
    """Render pydantic errors as `project 'web': field 'repo' is required; ...` (with
    `env_prefix`, a setting is named by its variable: `ORCH_REDIS_URL ...`)."""
    parts: list[str] = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        where = ""
        if len(loc) >= 2 and loc[0] == "projects":
            where = f"project {loc[1]!r}: "
            loc = loc[2:]
        field = ".".join(loc) or "(top level)"
        msg = "is required" if err["type"] == "missing" else err["msg"]
        msg = msg.removeprefix("Value error, ")
        named = f"{env_prefix}{field.upper()}" if env_prefix else f"field {field!r}"
        parts.append(f"{where}{named} {msg}" if not env_prefix else f"{named}: {msg}")
    return "; ".join(parts)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, "ORCH_")) from exc
