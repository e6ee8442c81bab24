"""Task and Job: the two records the pipeline keeps, with a flat string form for Redis.

A Task is one Plane work item travelling the stages; a Job is one unit of stage work
(an agent run, the gates, a deploy) for a task. `to_hash` / `from_hash` give the flat
`str -> str` mapping stored in a Redis hash; unknown keys are ignored on read so old
records survive new fields.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from app.domain.stages import Stage


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"  # has an outcome; never run again
    CANCELLED = "cancelled"
    LOST = "lost"  # heartbeat stopped; re-enqueued or blocked by the sweep


ACTIVE_JOB_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", use_enum_values=False)

    def to_hash(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in self.model_dump(mode="json").items():
            if value is None:
                out[key] = ""
            elif isinstance(value, bool):
                out[key] = "1" if value else "0"
            else:
                out[key] = str(value)
        return out

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> Self:
        clean: dict[str, Any] = {}
        for key, value in data.items():
            # "" stands for None/default: dropping it lets the field default apply.
            if key in cls.model_fields and value != "":
                clean[key] = value
        return cls.model_validate(clean)


class Task(_Record):
    id: str
    plane_issue_id: str
    work_item_id: str
    project: str = ""
    repo: str
    branch: str
    stage: Stage
    title: str = ""
    # The work item's text as of the last trigger (agents read it without a Plane call).
    description: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    rework_count: int = 0
    conflict_rework_count: int = 0  # merge conflicts resolved by the developer agent
    failed_stage: Stage | None = None  # where a blocked task resumes
    blocked_reason: str | None = None
    show_cancelled: bool = False  # an operator cancelled it: Plane is told (not from Plane)
    active_job_id: str | None = None
    status_key: str | None = None  # the Layer B key last written to Plane
    status_sync_ok: bool = True
    # The state Plane shows, as last seen (a human's webhook or a read) or written by us.
    plane_state_id: str | None = None
    feedback: str | None = None  # rework feedback for the developer (gates, reviewers)
    review_started_at: datetime | None = None
    # A verdict arrived while the review job ran (and was set aside): look again after.
    verdict_early: bool = False
    pr_url: str | None = None
    pr_number: int | None = None
    gates_passed_sha: str | None = None  # head the quality gates last passed on
    merged_sha: str | None = None
    merge_waiting_since: datetime | None = None
    deploy_started_at: datetime | None = None
    monitor_started_at: datetime | None = None
    seen_at: datetime | None = None  # the work item was last seen in Plane (reconciler)
    missing_since: datetime | None = None  # Plane answered 404 for it (not yet confirmed)
    # lifetime budget use (survives re-triggers and restarts)
    attempts_used: int = 0
    agent_seconds: float = 0.0
    tokens_used: int = 0


class Job(_Record):
    id: str
    task_id: str
    stage: Stage
    state: JobState = JobState.QUEUED
    outcome: str | None = None
    attempt: int = 1
    created_at: datetime = Field(default_factory=utcnow)
    enqueued_at: datetime | None = None  # last (re-)send of its run_job message
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    time_limit_s: float = 1800.0  # the sweep calls a running job lost past this + margin
    error: str | None = None
    agent_result: str | None = None  # JSON, recorded the moment the agent exits
    agent_pgid: int | None = None
    agent_host: str | None = None
    gates: str | None = None  # JSON list of gate results

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_JOB_STATES
