"""The project registry: one Project = one Plane project <-> one repo.

Loaded from TOML (`[projects.<name>]` tables) by `app.config.load_registry`; every
field is validated here so a bad registry fails at start with the field named.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# Logical Plane status keys (DESIGN section 6) and their default state names.
DEFAULT_STATE_NAMES: dict[str, str] = {
    "to_analyse": "To Analyse",
    "analysis": "Analysis",
    "in_progress": "In Progress",
    "quality_gate": "Quality Gate",
    "code_review": "Code Review",
    "approved": "Approved",
    "rejected": "Rejected",
    "awaiting_deploy": "Awaiting Deploy",
    "deploying": "Deploying",
    "monitoring": "Monitoring",
    "done": "Done",
    "blocked": "Blocked",
    "cancelled": "Cancelled",
}

AgentRole = Literal["analyst", "developer", "reviewer"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentCommand(_Strict):
    argv: list[str] = Field(min_length=1)
    time_limit_s: float = Field(default=1800, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    env: dict[str, str] = Field(default_factory=dict)  # fixed values it gets
    pass_env: list[str] = Field(default_factory=list)  # the worker's variables it gets

    @field_validator("pass_env")
    @classmethod
    def _no_settings(cls, value: list[str]) -> list[str]:
        own = [name for name in value if name.startswith("ORCH_")]
        if own:
            raise ValueError(f"never passes planeflow's own settings to agents: {own}")
        return value


class Budget(_Strict):
    """Lifetime limits of one work item, across re-triggers and restarts (0 = no limit)."""

    attempts: int = Field(default=30, ge=0)
    agent_seconds: float = Field(default=4 * 3600, ge=0)
    tokens: int = Field(default=0, ge=0)


class Gate(_Strict):
    name: str = Field(min_length=1)
    argv: list[str] = Field(min_length=1)
    timeout_s: float = Field(default=600, gt=0)
    env: dict[str, str] = Field(default_factory=dict)


class Project(_Strict):
    name: str
    plane_project_id: str = Field(min_length=1)
    repo: str = Field(min_length=1)  # git URL or local path of the repository
    work_item_prefix: str = Field(min_length=1, pattern=r"^[A-Z][A-Z0-9]*$")
    forge: Literal["git", "gitea"] = "git"
    gitea_repo: str | None = None  # "owner/name" on the Gitea server
    default_branch: str = "main"
    agents: dict[AgentRole, AgentCommand] = Field(default_factory=dict)
    gates: list[Gate] = Field(default_factory=list)
    deploy: list[str] | Literal["none"] = "none"
    deploy_timeout_s: float = Field(default=900, gt=0)
    # The worker's variables the deploy command gets (its credentials); the rest of its
    # environment is the agents' allow-list.
    deploy_pass_env: list[str] = Field(default_factory=list)
    health_url: str | None = None
    health_window_s: float = Field(default=60, ge=0)
    health_interval_s: float = Field(default=5, gt=0)
    health_failure_threshold: int = Field(default=3, ge=1)
    max_rework: int = Field(default=3, ge=0)
    budget: Budget = Field(default_factory=Budget)
    merge_wait_s: float = Field(default=1800, gt=0)  # how long merge waits for CI
    # A merge conflict is resolved by the developer agent inside the repo's merge slot,
    # at most this many times per task (apart from max_rework); then the task blocks.
    max_conflict_rework: int = Field(default=3, ge=0)
    reapprove_after_conflict: bool = False  # after a resolution, back to review
    states: dict[str, str] = Field(default_factory=dict)  # logical key -> Plane state name
    webhook_secret: SecretStr | None = None  # overrides ORCH_PLANE_WEBHOOK_SECRET
    # This project's own Plane API key (overrides ORCH_PLANE_API_TOKEN): its own budget.
    plane_api_token: SecretStr | None = None
    self_hosting: bool = False

    @field_validator("states")
    @classmethod
    def _known_state_keys(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(DEFAULT_STATE_NAMES))
        if unknown:
            raise ValueError(
                f"unknown status key(s) {unknown}; known: {sorted(DEFAULT_STATE_NAMES)}"
            )
        return value

    @model_validator(mode="after")
    def _gitea_needs_repo(self) -> Project:
        if self.forge == "gitea" and not self.gitea_repo:
            raise ValueError("forge 'gitea' needs field 'gitea_repo' (owner/name)")
        return self

    def state_name(self, key: str) -> str:
        """The Plane state name of a logical status key in this project."""
        return self.states.get(key, DEFAULT_STATE_NAMES[key])


class Registry(_Strict):
    projects: dict[str, Project]

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("projects"), dict):
            projects = {}
            for name, body in data["projects"].items():
                projects[name] = {"name": name, **body} if isinstance(body, dict) else body
            data = {**data, "projects": projects}
        return data

    @model_validator(mode="after")
    def _unique_plane_ids(self) -> Registry:
        seen: dict[str, str] = {}
        for name, project in self.projects.items():
            other = seen.setdefault(project.plane_project_id, name)
            if other != name:
                raise ValueError(
                    f"projects {other!r} and {name!r} share plane_project_id "
                    f"{project.plane_project_id!r}"
                )
        return self

    def by_plane_id(self, plane_project_id: str) -> Project | None:
        for project in self.projects.values():
            if project.plane_project_id == plane_project_id:
                return project
        return None

    def get(self, name: str) -> Project | None:
        return self.projects.get(name)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {type(value).__name__}")


def registry_toml(projects: dict[str, dict[str, Any]]) -> str:
    """A registry file's text for `projects` (name -> fields; inline tables keep it short)."""
    lines: list[str] = []
    for name, body in projects.items():
        lines.append(f"[projects.{name}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in body.items()]
    return "\n".join(lines) + "\n"
