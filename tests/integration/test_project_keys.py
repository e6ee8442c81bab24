"""A project with its own Plane API key: its calls carry that key and spend its budget,
and echoes of its user are recognised like the default user's."""

from __future__ import annotations

from typing import Any

from app.domain.results import Handled
from app.plane.ratelimit import key_digest
from app.sandbox.plane_runner import DEMO_PROJECT_ID, SandboxPlaneRunner
from app.services import Services
from tests.helpers import first_item, registry, start_first_item
from tests.integration.conftest import MakeServices

DEMO_KEY = "plane_api_sandbox_planeflow_demo_bot_00000"


def demo_keyed(make_services: MakeServices, runner: SandboxPlaneRunner) -> tuple[Services, Any]:
    with runner.sandbox.lock:
        user = runner.sandbox.world.add_user(DEMO_KEY, "planeflow-demo-bot")
    reg = registry(
        demo={
            "plane_project_id": DEMO_PROJECT_ID,
            "repo": "demo-repo",
            "work_item_prefix": "DEMO",
            "plane_api_token": DEMO_KEY,
        }
    )
    return make_services(reg), user


def test_the_projects_own_key_is_used_with_its_own_budget(
    make_services: MakeServices, sandbox_plane: SandboxPlaneRunner
) -> None:
    services, user = demo_keyed(make_services, sandbox_plane)
    item = first_item(sandbox_plane)
    start_first_item(services, sandbox_plane)
    world = sandbox_plane.sandbox.world
    with sandbox_plane.sandbox.lock:
        writers = [actor for _, actor in world.history[item.id]]
    assert writers[-1] == user.display_name  # "Analysis" was written with its own key
    window = f"pf:plane:rate:{key_digest(DEMO_KEY)}:window"
    assert services.store.r.zcard(window) >= 2  # its read and its write


def test_echoes_of_every_own_user_are_recognised(
    make_services: MakeServices, sandbox_plane: SandboxPlaneRunner
) -> None:
    services, user = demo_keyed(make_services, sandbox_plane)
    assert user.id in services.pipeline.own_users
    assert services.pipeline.own_user_id in services.pipeline.own_users
    assert user.id in services.store.own_users()  # the receiver's script reads this set
    item = first_item(sandbox_plane)
    result = services.events.process(
        {
            "project_id": DEMO_PROJECT_ID,
            "issue_id": item.id,
            "actor_id": user.id,
            "event_id": "1-0",
        }
    )
    assert result.kind is Handled.IGNORED and "echo" in result.detail
