"""Run the sandbox Plane: in a background thread (tests, demo) or in the foreground (CLI)."""

from __future__ import annotations

from app.projects import DEFAULT_STATE_NAMES
from app.sandbox.plane_server import SandboxPlane, make_app
from app.sandbox.plane_webhooks import WebhookSender
from app.sandbox.plane_world import CLASSIC_STATES, Project, World
from app.sandbox.serve import ThreadedServer

BOT_KEY = "plane_api_sandbox_planeflow_bot_0000000000"
HUMAN_KEY = "plane_api_sandbox_human_ada_00000000000000"
# A workspace user who is a member of no project (commands from them are refused).
GUEST_KEY = "plane_api_sandbox_guest_gus_00000000000000"
DEMO_PROJECT_ID = "5f0c1d2e-0000-4000-8000-00000000de00"

# Every pipeline status, for a board that shows each stage.
PIPELINE_STATES: tuple[tuple[str, str, str], ...] = (
    ("Backlog", "backlog", "#60646C"),
    ("Todo", "unstarted", "#60646C"),
    (DEFAULT_STATE_NAMES["to_analyse"], "unstarted", "#3B82F6"),
    (DEFAULT_STATE_NAMES["analysis"], "started", "#8B5CF6"),
    ("In Progress", "started", "#F59E0B"),
    (DEFAULT_STATE_NAMES["quality_gate"], "started", "#06B6D4"),
    (DEFAULT_STATE_NAMES["code_review"], "started", "#6366F1"),
    (DEFAULT_STATE_NAMES["approved"], "started", "#22C55E"),
    (DEFAULT_STATE_NAMES["rejected"], "started", "#EF4444"),
    (DEFAULT_STATE_NAMES["awaiting_deploy"], "started", "#84CC16"),
    (DEFAULT_STATE_NAMES["deploying"], "started", "#0EA5E9"),
    (DEFAULT_STATE_NAMES["monitoring"], "started", "#14B8A6"),
    ("Done", "completed", "#46A758"),
    (DEFAULT_STATE_NAMES["blocked"], "started", "#DC2626"),
    ("Cancelled", "cancelled", "#9AA4BC"),
)

# The states a card shows on its happy path, in order (a human's moves included).
JOURNEY: tuple[str, ...] = (
    DEFAULT_STATE_NAMES["to_analyse"],
    DEFAULT_STATE_NAMES["analysis"],
    "In Progress",
    DEFAULT_STATE_NAMES["quality_gate"],
    DEFAULT_STATE_NAMES["code_review"],
    DEFAULT_STATE_NAMES["approved"],
    DEFAULT_STATE_NAMES["awaiting_deploy"],
    DEFAULT_STATE_NAMES["deploying"],
    DEFAULT_STATE_NAMES["monitoring"],
    "Done",
)


def new_world(
    workspace: str = "acme", *, bot_key: str = BOT_KEY, human_key: str = HUMAN_KEY
) -> World:
    world = World(workspace)
    world.add_user(bot_key, "planeflow-bot", first_name="planeflow", last_name="bot")
    world.add_user(human_key, "ada", first_name="Ada", last_name="Admin")
    world.non_members.add(world.add_user(GUEST_KEY, "gus", first_name="Gus", last_name="Guest").id)
    return world


def seed_demo(
    world: World,
    *,
    human_key: str = HUMAN_KEY,
    items: int = 3,
    classic: bool = False,
    project_id: str = DEMO_PROJECT_ID,
) -> Project:
    """A demo project (prefix DEMO) with every pipeline status (or only the classic ones)."""
    human = world.user_for_key(human_key)
    project = world.add_project(
        "DEMO",
        "Demo",
        human,
        project_id=project_id,
        states=CLASSIC_STATES if classic else PIPELINE_STATES,
    )
    for n in range(1, items + 1):
        world.create_item(
            project,
            {"name": f"Demo work item {n}", "description_html": f"<p>Demo item {n}</p>"},
            human,
        )
    return project


class SandboxPlaneRunner(ThreadedServer):
    """Serves a SandboxPlane on 127.0.0.1 from a daemon thread with its own loop."""

    def __init__(self, sandbox: SandboxPlane, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(make_app(sandbox), host=host, port=port)
        self.sandbox = sandbox

    @property
    def base_url(self) -> str:
        return self.url

    def start(self) -> SandboxPlaneRunner:
        super().start()
        return self

    def drain_webhooks(self) -> None:
        """Block until every queued webhook delivery has been attempted."""
        self.call(self.sandbox.sender.drained())


def make_sandbox(
    *,
    workspace: str = "acme",
    rate_limit: int | None = 60,
    rate_window_s: float = 60.0,
    webhook_retries: int = 5,
    webhook_backoff_s: float = 1.0,
    bot_key: str = BOT_KEY,
    human_key: str = HUMAN_KEY,
) -> SandboxPlane:
    sandbox = SandboxPlane(
        new_world(workspace, bot_key=bot_key, human_key=human_key),
        rate_limit=rate_limit,
        rate_window_s=rate_window_s,
        sender=WebhookSender(retries=webhook_retries, backoff_s=webhook_backoff_s),
    )
    sandbox.human_key = human_key
    return sandbox
