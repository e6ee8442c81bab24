"""Builds the long-lived objects of a process from one Settings object.

`Services` owns the Redis client, the Plane client (with the shared rate budget and
call counters), the state resolver and the status sync; `close()` releases them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from app.actions import Actions
from app.caps import Caps
from app.commands import CommentCommands
from app.config import Settings, load_registry
from app.domain.errors import ConfigError
from app.events import EventProcessor, own_user_id, own_users
from app.forge.base import Forge
from app.forge.gitea import GiteaForge
from app.forge.gitremote import GitRemoteForge
from app.jobs import JobRunner
from app.outbox import OutboxFlusher, PlaneOutbox
from app.outbox_store import OutboxStore
from app.pipeline import Pipeline
from app.plane.client import PlaneClient, ProjectKey
from app.plane.ratelimit import Priority, RateBudget, key_digest
from app.plane.status import StateResolver
from app.projects import Project, Registry
from app.queue import Dispatcher, make_redis_broker
from app.queue_state import QueueState
from app.reconciler import Reconciler
from app.store import Redis, Store, connect


@dataclass
class Services:
    settings: Settings
    redis: Redis | None = None
    registry_override: Registry | None = None
    broker: Any = None
    _closers: list[object] = field(default_factory=list)

    @cached_property
    def client(self) -> Redis:
        return self.redis if self.redis is not None else connect(self.settings.redis_url)

    @cached_property
    def store(self) -> Store:
        return Store(
            self.client,
            self.settings.keys,
            lock_ttl_s=self.settings.lock_ttl_s,
            lock_wait_s=self.settings.lock_wait_s,
        )

    @cached_property
    def registry(self) -> Registry:
        if self.registry_override is not None:
            return self.registry_override
        return load_registry(self.settings.projects_file)

    @cached_property
    def budget(self) -> RateBudget:
        return RateBudget(
            self.client, self.settings.keys.plane_rate, per_minute=self.settings.plane_rate_per_min
        )

    @cached_property
    def project_keys(self) -> dict[str, ProjectKey]:
        """Projects with their own Plane API key: each key with its own budget."""
        default = self.settings.plane_api_token.get_secret_value()
        budgets: dict[str, RateBudget] = {}
        out: dict[str, ProjectKey] = {}
        for project in self.registry.projects.values():
            token = project.plane_api_token.get_secret_value() if project.plane_api_token else ""
            if not token or token == default:
                continue
            digest = key_digest(token)
            if digest not in budgets:
                budgets[digest] = RateBudget(
                    self.client,
                    f"{self.settings.keys.plane_rate}:{digest}",
                    per_minute=self.settings.plane_rate_per_min,
                )
            out[project.plane_project_id] = ProjectKey(token, budgets[digest])
        return out

    @cached_property
    def plane(self) -> PlaneClient:
        return self.plane_client(self.store.incr_counter)

    def plane_client(self, count: Callable[[str], None]) -> PlaneClient:
        """A new Plane client on the shared budget, counting its calls with `count`."""
        s = self.settings
        return PlaneClient(
            s.plane_base_url,
            s.plane_api_token.get_secret_value(),
            s.plane_workspace,
            timeout_s=s.plane_timeout_s,
            retries=s.plane_retries,
            budget=self.budget,
            count=count,
            project_keys=self.project_keys,
        )

    @cached_property
    def resolver(self) -> StateResolver:
        return StateResolver(self.plane, self.store, ttl_s=self.settings.plane_states_ttl_s)

    @cached_property
    def outbox_store(self) -> OutboxStore:
        return OutboxStore(self.client, self.settings.keys)

    def _notify(self, task_id: str, delay_ms: int | None) -> object:
        return self.dispatcher.send_flush(task_id, delay_ms=delay_ms)

    @cached_property
    def outbox(self) -> PlaneOutbox:
        """What deciders write Plane's part to (durable, sent by the flusher)."""
        return PlaneOutbox(self.outbox_store, self._notify)

    @cached_property
    def flusher(self) -> OutboxFlusher:
        return OutboxFlusher(
            self.store,
            self.outbox_store,
            self.plane.at_priority(Priority.STATUS, retries=1),
            self.plane.at_priority(Priority.COMMENT, retries=1),
            self.resolver,
            self.registry,
            self._notify,
        )

    @cached_property
    def dispatcher(self) -> Dispatcher:
        """Sends to actors by name on a broker that shares this Redis."""
        if self.broker is None:
            self.broker = make_redis_broker(self.settings.redis_url)
        return Dispatcher(self.broker)

    @cached_property
    def pipeline(self) -> Pipeline:
        own = own_user_id(self.settings.plane_user_id, self.store, self.plane)
        users = own_users(own, self.store, self.plane)
        return Pipeline(self.store, self.outbox, self.plane, self.dispatcher, own, users)

    @cached_property
    def events(self) -> EventProcessor:
        return EventProcessor(
            self.store,
            self.registry,
            self.plane,
            self.resolver,
            self.pipeline,
            snapshot_fresh_s=self.settings.snapshot_fresh_s,
            commands=self.commands,
        )

    @cached_property
    def queue_state(self) -> QueueState:
        return QueueState(self.client, self.settings.keys)

    @cached_property
    def actions(self) -> Actions:
        """Operator actions (dashboard, CLI, comments); no Plane call of their own."""
        return Actions(self.store, self.outbox, self.dispatcher, self.queue_state)

    @cached_property
    def commands(self) -> CommentCommands:
        return CommentCommands(
            self.store,
            self.plane.at_priority(Priority.TRIGGER),
            self.actions,
            self._own_users,
            self.dispatcher.send,
        )

    def _own_users(self) -> frozenset[str]:
        """Every user planeflow writes as; asked again while none is known yet."""
        pipeline = self.pipeline
        if not pipeline.own_users:
            pipeline.own_users = frozenset(self.store.own_users())
        return pipeline.own_users

    @cached_property
    def reconciler(self) -> Reconciler:
        def listing_client(count: Callable[[str], None]) -> PlaneClient:
            # background reads: they leave room for triggers and status writes
            return self.plane_client(count).at_priority(Priority.COMMENT)

        return Reconciler(
            self.settings,
            self.store,
            self.registry,
            listing_client,
            self.events,
            self.outbox,
            self.dispatcher,
        )

    @cached_property
    def caps(self) -> Caps:
        s = self.settings
        return Caps(
            self.client,
            s.keys,
            total=s.max_jobs,
            per_project=s.max_jobs_per_project,
            per_repo=s.max_jobs_per_repo,
        )

    def forge_for(self, project: Project) -> Forge:
        if project.forge == "gitea":
            if not self.settings.gitea_base_url or not project.gitea_repo:
                raise ConfigError(
                    f"project {project.name!r}: forge 'gitea' needs "
                    "ORCH_GITEA_BASE_URL and gitea_repo"
                )
            return GiteaForge(
                self.settings.gitea_base_url,
                self.settings.gitea_token.get_secret_value(),
                project.gitea_repo,
            )
        return GitRemoteForge()

    @cached_property
    def job_runner(self) -> JobRunner:
        return JobRunner(
            self.settings,
            self.store,
            self.registry,
            self.plane,
            self.outbox,
            self.dispatcher,
            self.caps,
            self.forge_for,
            on_review_wait=self.events.recheck,
        )

    def close(self) -> None:
        if "plane" in self.__dict__:
            self.plane.close()
        if "client" in self.__dict__ and self.redis is None:
            self.client.close()
