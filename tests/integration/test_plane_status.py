"""Layer B: per-project state resolution, alias fallback, status sync, ensure-states."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.cli import main
from app.domain.stages import Stage
from app.plane.client import PlaneClient
from app.plane.setup import ensure_states
from app.plane.status import STAGE_STATUS_KEY, StateResolver, Trigger
from app.projects import Project, Registry
from app.sandbox.plane_runner import BOT_KEY, PIPELINE_STATES, SandboxPlaneRunner
from app.sandbox.plane_world import CLASSIC_STATES
from app.store import Store
from tests.conftest import RedisServer

OLD_SYSTEM_STATES = (
    *CLASSIC_STATES,
    ("Approved", "started", "#22C55E"),
    ("Rejected", "started", "#EF4444"),
    ("Blocked", "started", "#DC2626"),
)


@pytest.fixture
def world_projects(sandbox_plane: SandboxPlaneRunner) -> dict[str, str]:
    """Three sandbox projects: every status, the old system's statuses, bare Plane."""
    world = sandbox_plane.sandbox.world
    human = world.user_for_key(sandbox_plane.sandbox.human_key or "")
    ids = {}
    for ident, states in (
        ("FULL", PIPELINE_STATES),
        ("OLD", OLD_SYSTEM_STATES),
        ("BARE", CLASSIC_STATES),
    ):
        project = world.add_project(ident, ident.title(), human, states=states)
        world.create_item(project, {"name": f"{ident} item"}, human)
        ids[ident] = project.id
    return ids


def reg(ids: dict[str, str]) -> Registry:
    return Registry.model_validate(
        {
            "projects": {
                name.lower(): {
                    "plane_project_id": pid,
                    "repo": f"r-{name}",
                    "work_item_prefix": name,
                }
                for name, pid in ids.items()
            }
        }
    )


@pytest.fixture
def client(sandbox_plane: SandboxPlaneRunner, store: Store) -> Iterator[PlaneClient]:
    with PlaneClient(
        sandbox_plane.base_url, BOT_KEY, "acme", retries=0, count=store.incr_counter, timeout_s=1
    ) as c:
        yield c


def test_project_with_every_status_resolves_each_key_to_its_own_state(
    world_projects: dict[str, str], client: PlaneClient, store: Store
) -> None:
    registry = reg(world_projects)
    states = StateResolver(client, store).resolve(registry.projects["full"])
    assert states.missing() == []
    names = {
        key: states.by_id(states.resolve(key) or "").name  # type: ignore[union-attr]
        for key in STAGE_STATUS_KEY.values()
    }
    assert names["code_review"] == "Code Review" and names["monitoring"] == "Monitoring"


def test_old_system_project_degrades_every_new_key_to_its_base(
    world_projects: dict[str, str], client: PlaneClient, store: Store
) -> None:
    states = StateResolver(client, store).resolve(reg(world_projects).projects["old"])
    by_name = {s.name: s.id for s in states.states}
    expected = {
        "to_analyse": "In Progress",
        "analysis": "In Progress",
        "quality_gate": "In Progress",
        "code_review": "In Progress",
        "awaiting_deploy": "Approved",
        "deploying": "Approved",
        "monitoring": "Done",
        "in_progress": "In Progress",
        "approved": "Approved",
        "rejected": "Rejected",
        "done": "Done",
        "blocked": "Blocked",
        "cancelled": "Cancelled",
    }
    assert {k: states.resolve(k) for k in expected} == {k: by_name[v] for k, v in expected.items()}


def test_two_projects_with_the_same_names_never_mix_ids(
    world_projects: dict[str, str], client: PlaneClient, store: Store
) -> None:
    registry = reg(world_projects)
    resolver = StateResolver(client, store)
    full = resolver.resolve(registry.projects["full"])
    old = resolver.resolve(registry.projects["old"])
    assert full.resolve("in_progress") != old.resolve("in_progress")
    assert {s.id for s in full.states}.isdisjoint({s.id for s in old.states})
    assert all(full.by_id(sid) for sid in full.trigger_ids())


def test_alias_is_one_trigger_not_two(
    world_projects: dict[str, str], client: PlaneClient, store: Store
) -> None:
    registry = reg(world_projects)
    resolver = StateResolver(client, store)
    old = resolver.resolve(registry.projects["old"])
    starts = [sid for sid, t in old.trigger_ids().items() if t is Trigger.START]
    assert starts == [old.resolve("in_progress")]  # to_analyse aliases in_progress: once
    full = resolver.resolve(registry.projects["full"])
    full_starts = {sid for sid, t in full.trigger_ids().items() if t is Trigger.START}
    assert full_starts == {full.direct("in_progress"), full.direct("to_analyse")}
    assert full.trigger_of(full.direct("cancelled")) is Trigger.CANCEL
    assert full.trigger_of(full.direct("approved")) is Trigger.APPROVED


def test_bare_project_cannot_take_a_verdict(
    world_projects: dict[str, str], client: PlaneClient, store: Store
) -> None:
    bare = StateResolver(client, store).resolve(reg(world_projects).projects["bare"])
    assert Trigger.APPROVED not in bare.trigger_ids().values()
    assert bare.resolve("awaiting_deploy") is None


def test_resolution_is_cached_in_redis_until_refreshed(
    world_projects: dict[str, str], client: PlaneClient, store: Store
) -> None:
    project = reg(world_projects).projects["full"]
    resolver = StateResolver(client, store, ttl_s=60)
    resolver.resolve(project)
    resolver.resolve(project)
    assert store.counters()["plane_calls"] == 1
    assert store.r.ttl(store.keys.plane_states("full")) > 0
    assert store.r.hget(store.keys.plane_states("full"), "code_review")
    resolver.resolve(project, refresh=True)
    assert store.counters()["plane_calls"] == 2


def make_task(store: Store, project: Project, issue_id: str) -> str:
    task, _ = store.create_task_atomic(
        issue_id,
        f"{project.work_item_prefix}-1",
        project.repo,
        "feature/x",
        Stage.ANALYSIS,
        "t",
        project=project.name,
    )
    return task.id


def test_ensure_states_creates_missing_once(
    world_projects: dict[str, str], client: PlaneClient, store: Store
) -> None:
    project = reg(world_projects).projects["bare"]
    resolver = StateResolver(client, store)
    dry = ensure_states(client, resolver, project, dry_run=True)
    assert "Approved" in dry.created and resolver.resolve(project, refresh=True).missing()
    first = ensure_states(client, resolver, project)
    assert len(first.created) == len(dry.created) == 10
    assert first.states.missing() == []
    assert ensure_states(client, resolver, project).created == []


def test_ensure_states_cli(
    world_projects: dict[str, str],
    redis_server: RedisServer,
    sandbox_plane: SandboxPlaneRunner,
    tmp_path: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pathlib import Path

    registry_file = Path(str(tmp_path)) / "projects.toml"
    registry_file.write_text(
        f'[projects.bare]\nplane_project_id = "{world_projects["BARE"]}"\n'
        'repo = "r"\nwork_item_prefix = "BARE"\n'
    )
    for key, value in {
        "ORCH_REDIS_URL": redis_server.url,
        "ORCH_PROJECTS_FILE": str(registry_file),
        "ORCH_PLANE_BASE_URL": sandbox_plane.base_url,
        "ORCH_PLANE_API_TOKEN": BOT_KEY,
        "ORCH_PLANE_WEBHOOK_SECRET": "s",
        "ORCH_KEY_PREFIX": "cli-test:",
    }.items():
        monkeypatch.setenv(key, value)
    assert main(["config", "check", "--online"]) == 1
    assert "human verdicts cannot be taken" in capsys.readouterr().out
    assert main(["plane", "ensure-states", "--project", "bare"]) == 0
    out = capsys.readouterr().out
    assert "created 10 state(s)" in out and "Code Review" in out
    assert main(["config", "check", "--online"]) == 0
    table = capsys.readouterr().out
    assert "bare: states" in table and "code_review" in table and "Code Review" in table
