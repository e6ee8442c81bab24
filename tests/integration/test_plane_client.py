"""The Plane client against the sandbox Plane over real HTTP on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from app.domain.errors import PlaneError
from app.plane.client import PlaneClient
from app.sandbox.plane_runner import BOT_KEY, SandboxPlaneRunner
from app.sandbox.plane_world import Project


class Counts(dict[str, int]):
    def __call__(self, name: str) -> None:
        self[name] = self.get(name, 0) + 1


@pytest.fixture
def counts() -> Counts:
    return Counts()


@pytest.fixture
def client(sandbox_plane: SandboxPlaneRunner, counts: Counts) -> Iterator[PlaneClient]:
    with PlaneClient(
        sandbox_plane.base_url,
        BOT_KEY,
        "acme",
        timeout_s=0.5,
        retries=2,
        count=counts,
        sleep=lambda s: None,
    ) as c:
        yield c


def project_of(runner: SandboxPlaneRunner) -> Project:
    return next(iter(runner.sandbox.world.projects.values()))


def add_items(runner: SandboxPlaneRunner, n: int, state: str = "Backlog") -> None:
    world = runner.sandbox.world
    project = project_of(runner)
    human = world.user_for_key(runner.sandbox.human_key or "")
    with runner.sandbox.lock:
        for i in range(n):
            world.create_item(
                project, {"name": f"bulk {i}", "state": project.state_by_name(state).id}, human
            )


def test_pages_through_250_plus_items(
    client: PlaneClient, sandbox_plane: SandboxPlaneRunner, counts: Counts
) -> None:
    add_items(sandbox_plane, 260)
    project = project_of(sandbox_plane)
    items = list(client.iter_work_items(project.id, per_page=100))
    assert len(items) == 263
    assert len({i.id for i in items}) == 263
    assert counts["plane_calls"] == 3  # 100 + 100 + 63: stops on next_page_results=false


def test_state_filter_is_client_side(
    client: PlaneClient, sandbox_plane: SandboxPlaneRunner
) -> None:
    add_items(sandbox_plane, 120, state="Backlog")
    add_items(sandbox_plane, 7, state="Approved")
    project = project_of(sandbox_plane)
    approved = project.state_by_name("Approved").id
    found = client.list_issues_by_state(project.id, [approved])
    assert len(found) == 7
    assert all(i.state_id == approved for i in found)


def test_updated_after_stops_paging_early(
    client: PlaneClient, sandbox_plane: SandboxPlaneRunner, counts: Counts
) -> None:
    add_items(sandbox_plane, 300)
    project = project_of(sandbox_plane)
    for item_id in list(project.items)[:-2]:
        sandbox_plane.sandbox.world.backdate(project.id, item_id, 3600)
    bound = datetime.now(UTC) - timedelta(minutes=5)
    counts.clear()
    recent = list(client.iter_work_items(project.id, per_page=100, updated_after=bound))
    assert len(recent) == 2
    assert counts["plane_calls"] == 1


def test_updated_at_is_timezone_aware(
    client: PlaneClient, sandbox_plane: SandboxPlaneRunner
) -> None:
    item = next(client.iter_work_items(project_of(sandbox_plane).id))
    assert item.updated_at.tzinfo is not None


def test_get_set_state_and_comments(client: PlaneClient, sandbox_plane: SandboxPlaneRunner) -> None:
    project = project_of(sandbox_plane)
    item_id = next(iter(project.items))
    review = project.state_by_name("Code Review").id
    assert client.set_state(project.id, item_id, review) is True
    item = client.get_work_item(project.id, item_id)
    assert (item.state_id, item.state_name) == (review, "Code Review")
    assert client.post_comment(project.id, item_id, "<p>gates passed</p>") is True
    comments = client.list_comments(project.id, item_id)
    assert [c.comment_html for c in comments] == ["<p>gates passed</p>"]
    assert client.me().display_name == "planeflow-bot"


def test_create_state_is_idempotent(client: PlaneClient, sandbox_plane: SandboxPlaneRunner) -> None:
    project = project_of(sandbox_plane)
    first = client.create_state(project.id, "Staging", "started", "#123456")
    again = client.create_state(project.id, "Staging", "started", "#123456")
    assert first.id == again.id


def test_unknown_item_is_a_404_plane_error(
    client: PlaneClient, sandbox_plane: SandboxPlaneRunner
) -> None:
    with pytest.raises(PlaneError) as err:
        client.get_work_item(project_of(sandbox_plane).id, "00000000-0000-0000-0000-000000001234")
    assert err.value.status == 404


def test_wrong_key_is_403(sandbox_plane: SandboxPlaneRunner) -> None:
    with (
        PlaneClient(sandbox_plane.base_url, "wrong", "acme") as bad,
        pytest.raises(PlaneError) as err,
    ):
        bad.list_states(project_of(sandbox_plane).id)
    assert err.value.status == 403


# -- never-raise: 500, timeout, garbage ---------------------------------------------
@pytest.mark.parametrize("fault", ["500", "garbage", "slow:1"])
def test_list_issues_by_state_returns_empty_on_failure(
    fault: str, client: PlaneClient, sandbox_plane: SandboxPlaneRunner, counts: Counts
) -> None:
    project = project_of(sandbox_plane)
    sandbox_plane.sandbox.faults[project.id] = fault
    assert client.list_issues_by_state(project.id, ["any"]) == []
    assert counts["plane_list_failures"] == 1


@pytest.mark.parametrize("fault", ["500", "garbage", "slow:1"])
def test_status_setters_return_false_on_failure(
    fault: str, client: PlaneClient, sandbox_plane: SandboxPlaneRunner, counts: Counts
) -> None:
    project = project_of(sandbox_plane)
    item_id = next(iter(project.items))
    sandbox_plane.sandbox.faults[project.id] = fault
    assert client.set_state(project.id, item_id, project.state_by_name("Done").id) is False
    assert client.post_comment(project.id, item_id, "<p>x</p>") is False
    assert counts["plane_status_failures"] == 1 and counts["plane_comment_failures"] == 1


def test_5xx_is_retried_with_backoff(
    client: PlaneClient, sandbox_plane: SandboxPlaneRunner, counts: Counts
) -> None:
    project = project_of(sandbox_plane)
    sandbox_plane.sandbox.faults[project.id] = "500"
    with pytest.raises(PlaneError):
        client.list_states(project.id)
    assert counts["plane_5xx"] == 3  # 1 try + 2 retries


def test_unreachable_plane_never_raises(counts: Counts) -> None:
    with PlaneClient(
        "http://127.0.0.1:9", BOT_KEY, "acme", retries=1, count=counts, sleep=lambda s: None
    ) as dead:
        assert dead.list_issues_by_state("p", ["s"]) == []
        assert dead.set_state("p", "i", "s") is False
    assert counts["plane_transport_errors"] == 4


def test_429_is_honoured_with_retry_after(
    sandbox_plane: SandboxPlaneRunner, counts: Counts
) -> None:
    sandbox_plane.sandbox.rate_limit = 3
    slept: list[float] = []
    with PlaneClient(
        sandbox_plane.base_url, BOT_KEY, "acme", retries=1, count=counts, sleep=slept.append
    ) as c:
        project = project_of(sandbox_plane)
        for _ in range(3):
            c.list_states(project.id)
        with pytest.raises(PlaneError) as err:
            c.list_states(project.id)
    assert err.value.status == 429
    assert counts["plane_429"] == 2
    assert slept and 1 <= slept[0] <= 60  # waited what Retry-After said
