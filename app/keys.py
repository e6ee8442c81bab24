"""Every Redis key planeflow writes, built in this one module.

The README's redis-cli section is a copy of this file. All keys share a prefix
(`pf:` by default, `ORCH_KEY_PREFIX`); Dramatiq keeps its own keys under `dramatiq:`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "pf:"

    # -- webhooks -------------------------------------------------------------
    @property
    def events(self) -> str:
        """Stream of every verified webhook with its outcome (XADD, MAXLEN ~)."""
        return f"{self.prefix}events"

    def delivery(self, digest: str) -> str:
        """Dedup marker of one webhook body, named by its verified signature (hex): its
        `pf:events` id (set with a TTL)."""
        return f"{self.prefix}delivery:{digest}"

    def snapshot(self, plane_issue_id: str) -> str:
        """String `<updated_at epoch>|<event id>`: the work item's newest snapshot from a
        human's (non-echo) delivery, by `data.updated_at`; ties go to the later arrival."""
        return f"{self.prefix}snapshot:{plane_issue_id}"

    def fold(self, plane_issue_id: str) -> str:
        """String `<event id>|<1 if our own user>`: a `process_event` of this work item is
        queued and not started yet, so later state deliveries fold into it (TTL)."""
        return f"{self.prefix}fold:{plane_issue_id}"

    # -- tasks ----------------------------------------------------------------
    @property
    def task_seq(self) -> str:
        """Counter that numbers tasks (INCR)."""
        return f"{self.prefix}seq:task"

    def task(self, task_id: str) -> str:
        """Hash: one task."""
        return f"{self.prefix}task:{task_id}"

    def task_by_issue(self, plane_issue_id: str) -> str:
        """String: the anti-dup index, Plane work item id -> task id (SET NX)."""
        return f"{self.prefix}task-by-issue:{plane_issue_id}"

    def tombstone(self, plane_issue_id: str) -> str:
        """String (JSON): a purged work item's task — it is never started again."""
        return f"{self.prefix}tombstone:{plane_issue_id}"

    def tasks_in_stage(self, stage: str) -> str:
        """Set: ids of the tasks currently in a stage."""
        return f"{self.prefix}tasks:{stage}"

    @property
    def tasks_all(self) -> str:
        """Sorted set: every task id, scored by creation time."""
        return f"{self.prefix}tasks"

    def task_log(self, task_id: str) -> str:
        """Stream: the task's timeline (transitions, jobs, syncs, ignored triggers)."""
        return f"{self.prefix}task:{task_id}:log"

    # -- jobs -----------------------------------------------------------------
    @property
    def job_seq(self) -> str:
        return f"{self.prefix}seq:job"

    def job(self, job_id: str) -> str:
        """Hash: one job."""
        return f"{self.prefix}job:{job_id}"

    @property
    def jobs_active(self) -> str:
        """Set: ids of queued or running jobs (the stuck-job sweep reads it)."""
        return f"{self.prefix}jobs:active"

    # -- locks ----------------------------------------------------------------
    def issue_lock(self, plane_issue_id: str) -> str:
        """Per-issue lock serialising the handlers of one work item."""
        return f"{self.prefix}lock:issue:{plane_issue_id}"

    def create_lock(self, plane_issue_id: str) -> str:
        """Lock held only inside create_task_atomic (separate from the issue lock)."""
        return f"{self.prefix}lock:create:{plane_issue_id}"

    def deploy_lock(self, repo: str) -> str:
        """One deploying task per repo: held from awaiting_deploy to the end of monitoring."""
        return f"{self.prefix}lock:deploy:{repo}"

    def merge_lock(self, repo: str) -> str:
        """One merging task per repo (the merge queue): held while its branch is brought
        up to date, a conflict resolved, the gates re-run and the merge pushed."""
        return f"{self.prefix}lock:merge:{repo}"

    def slots(self, scope: str) -> str:
        """Sorted set: running jobs in a concurrency scope (global, project:x, repo:y)."""
        return f"{self.prefix}slots:{scope}"

    @property
    def scheduler_lock(self) -> str:
        return f"{self.prefix}lock:scheduler"

    def reconcile_lock(self, project: str) -> str:
        return f"{self.prefix}lock:reconcile:{project}"

    def human_event(self, plane_issue_id: str) -> str:
        """String, TTL: a human's event for this work item is being processed (the
        outbox holds its status writes meanwhile, so they cannot hide the human's move)."""
        return f"{self.prefix}human-event:{plane_issue_id}"

    # -- the Plane outbox -------------------------------------------------------
    @property
    def outbox_due(self) -> str:
        """Sorted set: task id -> when its pending Plane writes should be tried (epoch s)."""
        return f"{self.prefix}outbox:due"

    def outbox_comments(self, task_id: str) -> str:
        """List: the task's comments not yet accepted by Plane, oldest first (JSON)."""
        return f"{self.prefix}outbox:{task_id}:comments"

    def outbox_notes(self, task_id: str) -> str:
        """List: milestone notes (HTML) gathered for the task's next digest comment."""
        return f"{self.prefix}outbox:{task_id}:notes"

    def outbox_statuses(self, task_id: str) -> str:
        """List: the stages the task moved into since its status was last flushed, in
        order (pushed by the move itself), so each can be shown when the budget allows."""
        return f"{self.prefix}outbox:{task_id}:stages"

    def outbox_seq(self, task_id: str) -> str:
        """Counter numbering the task's comments (their external ids); never reset."""
        return f"{self.prefix}outbox:{task_id}:seq"

    @property
    def outbox_tries(self) -> str:
        """Hash: task id -> failed flush attempts in a row (the backoff)."""
        return f"{self.prefix}outbox:tries"

    def outbox_lock(self, task_id: str) -> str:
        """One flusher per task at a time, so writes reach Plane in order."""
        return f"{self.prefix}lock:outbox:{task_id}"

    # -- Plane ----------------------------------------------------------------
    def plane_states(self, project: str) -> str:
        """Hash: cached resolution of a project's logical status keys to state ids."""
        return f"{self.prefix}plane:states:{project}"

    @property
    def plane_rate(self) -> str:
        """Dramatiq rate-limiter key shared by every process calling Plane."""
        return f"{self.prefix}plane:rate"

    @property
    def plane_me(self) -> str:
        """String: our own Plane user id (echo suppression)."""
        return f"{self.prefix}plane:me"

    @property
    def plane_users(self) -> str:
        """Set: every Plane user planeflow writes as (the default key's and each project
        key's), so echoes of any of them are recognised."""
        return f"{self.prefix}plane:users"

    @property
    def plane_key_users(self) -> str:
        """Hash: API key digest -> the Plane user it belongs to (asked once per key)."""
        return f"{self.prefix}plane:key-users"

    @property
    def webhooks_last(self) -> str:
        """Hash: project -> ISO time of the last webhook received for it."""
        return f"{self.prefix}webhooks:last"

    def reconcile_state(self, project: str) -> str:
        """Hash: a project's reconcile watermark, pass count, next due time, last figures."""
        return f"{self.prefix}reconcile:{project}"

    @property
    def counters(self) -> str:
        """Hash: counters (Plane calls, failures, replays, ...) shared by all processes."""
        return f"{self.prefix}counters"

    @property
    def observations(self) -> str:
        """Hash: `<metric>|<label>|sum` and `...|count` of timed things (job durations
        per stage, webhook lag), shared by all processes; exported as summaries."""
        return f"{self.prefix}observations"

    # -- the operator's view --------------------------------------------------
    @property
    def audit(self) -> str:
        """Stream: every operator action (retry, cancel, requeue, a comment's command)
        with where it came from, for the dashboard (MAXLEN ~)."""
        return f"{self.prefix}audit"

    def plane_members(self, plane_project_id: str) -> str:
        """Set, TTL: the project's members as Plane last listed them (who may command)."""
        return f"{self.prefix}plane:members:{plane_project_id}"

    def plane_members_asked(self, plane_project_id: str) -> str:
        """String, TTL: the members list was just asked for (at most once a minute)."""
        return f"{self.prefix}plane:members-asked:{plane_project_id}"

    def dead_letter(self, broker_message_id: str) -> str:
        """String, TTL: why a dead-lettered Dramatiq message died (its last error)."""
        return f"{self.prefix}dead-letter:{broker_message_id}"
