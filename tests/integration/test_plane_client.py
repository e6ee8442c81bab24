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
    found = [i for i in client.iter_work_items(project.id) if i.state_id == approved]
    assert len(found) == 7  # Plane ignores state filters: the listing is filtered here
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
    client.patch_work_item(project.id, item_id, state=review)
    item = client.get_work_item(project.id, item_id)
    assert (item.state_id, item.state_name) == (review, "Code Review")
    first = client.create_comment(project.id, item_id, "<p>gates passed</p>", external_id="x-1")
    again = client.create_comment(project.id, item_id, "<p>gates passed</p>", external_id="x-1")
    assert first[1] is True and again == (first[0], False)  # 409: the same comment
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


# -- failures: 500, timeout, garbage -------------------------------------------------
@pytest.mark.parametrize("fault", ["500", "garbage", "slow:1"])
def test_failures_are_plane_errors_saying_whether_a_retry_may_help(
    fault: str, client: PlaneClient, sandbox_plane: SandboxPlaneRunner
) -> None:
    project = project_of(sandbox_plane)
    item_id = next(iter(project.items))
    sandbox_plane.sandbox.faults[project.id] = fault
    with pytest.raises(PlaneError) as err:
        client.patch_work_item(project.id, item_id, state=project.state_by_name("Done").id)
    assert err.value.retryable is (fault != "garbage")  # garbage JSON: the same again


def test_5xx_is_retried_with_backoff(
    client: PlaneClient, sandbox_plane: SandboxPlaneRunner, counts: Counts
) -> None:
    project = project_of(sandbox_plane)
    sandbox_plane.sandbox.faults[project.id] = "500"
    with pytest.raises(PlaneError):
        client.list_states(project.id)
    assert counts["plane_5xx"] == 3  # 1 try + 2 retries


def test_unreachable_plane_is_a_retryable_error(counts: Counts) -> None:
    with (
        PlaneClient(
            "http://127.0.0.1:9", BOT_KEY, "acme", retries=1, count=counts, sleep=lambda s: None
        ) as dead,
        pytest.raises(PlaneError) as err,
    ):
        dead.patch_work_item("p", "i", state="s")
    assert err.value.retryable and counts["plane_transport_errors"] == 2


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
