"""Commands from Plane comments: `/planeflow retry|cancel|status|explain` on a work item.

Plane sends every new comment as an `issue_comment` webhook; the receiver queues those
that mention `/planeflow` (never folded). Here the comment, as stored by the receiver,
is parsed (`app.domain.commands`) and each command is checked before it acts:

- commands are refused while planeflow's own Plane user is unknown — a reply of ours
  could not be told from a person's command — and a comment by any of planeflow's
  users (or carrying planeflow's `external_source`) is ignored, with the reason;
- the author must be a member of the project (Plane's members list, cached in Redis
  for `MEMBERS_TTL_S`, asked again at most once a minute when an author is not in it);
- retry and cancel are operator actions (`app.actions`), recorded on the timeline with
  the comment's author; status and explain answer from the task's record.

Each comment gets one reply comment (through the task's outbox, or for a work item
without a task through the `post_reply` actor), whose external id is derived from the
comment's id, so a redelivered event cannot post it twice. No line of a reply starts
with a command (checked before it is queued).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from app.actions import Actions, Origin
from app.domain.commands import (
    HELP_LINES,
    MAX_COMMANDS,
    Command,
    Verb,
    read_commands,
    reply_text_is_safe,
)
from app.domain.errors import PlaneError, TemporaryError
from app.domain.ids import is_uuid
from app.domain.models import Task
from app.domain.results import Handled, Result, TimelineKind, ignored
from app.plane.client import PlaneClient
from app.projects import Project
from app.queue import PLANE_QUEUE, POST_REPLY
from app.store import Store

log = logging.getLogger(__name__)

MEMBERS_TTL_S = 600
STATUS_DECISIONS = 5  # timeline entries in a status reply
EXPLAIN_DECISIONS = 40  # ... and in an explain reply


@dataclass(frozen=True)
class CommentEvent:
    """The parts of a stored `issue_comment` delivery a command needs."""

    comment_id: str
    html: str
    actor_id: str
    actor_name: str
    external_source: str

    @classmethod
    def from_body(cls, body: str) -> CommentEvent:
        raw = orjson.loads(body)
        data = raw.get("data") or {}
        actor = (raw.get("activity") or {}).get("actor") or {}
        actor_id = str(actor.get("id") or data.get("actor") or data.get("created_by") or "")
        return cls(
            comment_id=str(data.get("id") or ""),
            html=str(data.get("comment_html") or ""),
            actor_id=actor_id,
            actor_name=str(actor.get("display_name") or actor_id[:8] or "someone"),
            external_source=str(data.get("external_source") or ""),
        )


class CommentCommands:
    def __init__(
        self,
        store: Store,
        plane: PlaneClient,
        actions: Actions,
        own_users: Callable[[], frozenset[str]],
        send: Callable[..., object],
        *,
        members_ttl_s: int = MEMBERS_TTL_S,
    ) -> None:
        self.store = store
        self.plane = plane
        self.actions = actions
        self.own_users = own_users
        self.send = send  # (queue, actor, *args): the post_reply message
        self.members_ttl_s = members_ttl_s

    def handle(self, project: Project, issue_id: str, event_id: str) -> Result:
        """Act on the commands of one comment event; TemporaryError asks for a retry.

        Idempotent: retry and cancel refuse a task that already moved, and the reply's
        external id is the comment's, so a second run posts nothing more.
        """
        fields = self.store.stored_event(event_id.split(" ", 1)[0])
        if fields is None or not fields.get("body"):
            return ignored("the comment event is no longer stored")
        try:
            comment = CommentEvent.from_body(fields["body"])
        except (ValueError, AttributeError):
            return ignored("the stored comment event is not readable")
        parsed = read_commands(comment.html)
        commands = parsed.found
        if not commands:
            return ignored("no /planeflow command in the comment")
        task = self.store.get_task_by_issue(issue_id)
        origin = Origin("comment", comment.actor_name)
        refused = self._refusal(project, comment)
        if refused:
            return self._refuse(task, issue_id, origin, refused)
        answers = [self._run(command, task, origin) for command in commands]
        if parsed.left_out:
            answers[-1] += (
                f"<br>({parsed.left_out} more command(s) left out: at most {MAX_COMMANDS} "
                "are read from one comment)"
            )
        self._reply(project, issue_id, task, comment, commands, answers)
        words = ", ".join(c.word for c in commands)
        if task is None:  # no timeline to record it on: the audit trail has it
            self.store.record_action("comment", issue_id, str(origin), f"answered: {words}")
        return Result(Handled.ANSWERED, words)

    # -- checks ---------------------------------------------------------------------
    def _refusal(self, project: Project, comment: CommentEvent) -> str:
        own = self.own_users()
        if not own:
            return (
                "commands are refused while planeflow's own Plane user is unknown "
                "(its replies could not be told from commands; set ORCH_PLANE_USER_ID)"
            )
        if comment.actor_id in own or comment.external_source == "planeflow":
            return "the comment is planeflow's own"
        if not is_uuid(comment.comment_id) or not is_uuid(comment.actor_id):
            return "the comment or its author has no Plane id"
        if not self._is_member(project, comment.actor_id):
            return f"{comment.actor_name} is not a member of project {project.name}"
        return ""

    def _is_member(self, project: Project, user_id: str) -> bool:
        members = self.store.cached_members(project.plane_project_id)
        if members is not None and user_id in members:
            return True
        if members is not None and not self.store.may_ask_members(project.plane_project_id):
            return False  # asked less than a minute ago: not a member (yet)
        try:
            listed = self.plane.list_members(project.plane_project_id)
        except PlaneError as exc:
            if exc.retryable:
                raise TemporaryError(f"cannot list the project's members: {exc}") from exc
            log.warning("project %s: cannot list members: %s", project.name, exc)
            return False
        found = {user.id for user in listed}
        self.store.remember_members(project.plane_project_id, found, self.members_ttl_s)
        return user_id in found

    def _refuse(self, task: Task | None, issue_id: str, origin: Origin, reason: str) -> Result:
        result = ignored(f"command refused: {reason}")
        if task is not None:
            self.store.record(task.id, TimelineKind.ACTION, f"command by {origin}: {result}")
        self.store.record_action(
            "comment", task.work_item_id if task else issue_id, str(origin), str(result)
        )
        log.info("comment on %s by %s: %s", issue_id, origin, result)
        return result

    # -- commands -------------------------------------------------------------------
    def _run(self, command: Command, task: Task | None, origin: Origin) -> str:
        """The answer to one command, as HTML."""
        if command.verb is None or command.verb is Verb.HELP:
            if task is not None:
                self.store.record(
                    task.id, TimelineKind.ACTION, f"{command.word} asked by {origin}: answered"
                )
            return help_html(command)
        if task is None:
            return (
                "there is no task for this work item yet: move it to <b>To Analyse</b> "
                "(or <b>In Progress</b>) to start one"
            )
        if command.verb is Verb.RETRY:
            return html.escape(str(self.actions.retry(task, origin)))
        if command.verb is Verb.CANCEL:
            return html.escape(str(self.actions.cancel(task, origin)))
        now = self.store.get_task(task.id) or task
        self.store.record(now.id, TimelineKind.ACTION, f"{command.word} asked by {origin}")
        if command.verb is Verb.STATUS:
            return self._status(now)
        return self._timeline(now, EXPLAIN_DECISIONS)

    def _status(self, task: Task) -> str:
        parts = [f"stage <b>{html.escape(task.stage.value)}</b>"]
        if task.blocked_reason:
            parts.append(f"blocked: {html.escape(task.blocked_reason[:500])}")
        job = self.store.active_job(task)
        if job is not None:
            since = job.started_at or job.created_at
            parts.append(
                f"active job {html.escape(job.id)} ({job.stage.value}, {job.state.value}, "
                f"attempt {job.attempt}, since {since:%Y-%m-%d %H:%M:%S} UTC)"
            )
        else:
            parts.append("no active job")
        if task.pr_url:
            shown = html.escape(task.pr_url)
            is_link = task.pr_url.startswith(("https://", "http://"))
            parts.append(
                f'pull request <a href="{shown}">{shown}</a>'
                if is_link
                else f"pull request <code>{shown}</code>"  # a plain git remote: a path
            )
        return "; ".join(parts) + self._timeline(task, STATUS_DECISIONS, lead="last decisions:")

    def _timeline(self, task: Task, count: int, lead: str = "decisions, oldest first:") -> str:
        every = self.store.timeline(task.id)
        entries = every[-count:]
        if len(every) > count and lead.startswith("decisions"):
            lead = (
                f"the last {count} of {len(every)} decisions, oldest first "
                f"(<code>planeflow explain {html.escape(task.work_item_id)}</code> has them all):"
            )
        rows = "".join(
            f"<li>{html.escape(e.get('ts', '')[:19])} {html.escape(e.get('kind', ''))}: "
            f"{html.escape(e.get('message', '')[:400])}</li>"
            for e in entries
        )
        return f"<br>{lead}<ul>{rows}</ul>" if rows else "<br>no decisions recorded yet"

    # -- the reply ------------------------------------------------------------------
    def _reply(
        self,
        project: Project,
        issue_id: str,
        task: Task | None,
        comment: CommentEvent,
        commands: list[Command],
        answers: list[str],
    ) -> None:
        name = html.escape(task.work_item_id if task else "this work item")
        items = "".join(
            f"<li>planeflow <code>{html.escape(c.word)}</code>: {a}</li>"
            for c, a in zip(commands, answers, strict=True)
        )
        reply = (
            f"<p>planeflow, for {html.escape(comment.actor_name)} on {name}:</p><ul>{items}</ul>"
        )
        if not reply_text_is_safe(reply):  # never: every line starts with our own words
            log.error(
                "reply to comment %s not sent: a line would start with a command",
                comment.comment_id,
            )
            return
        external_id = f"planeflow-reply-{comment.comment_id}"
        if task is not None:
            self.actions.outbox.comment(task.id, reply, external_id)
        else:
            self.send(
                PLANE_QUEUE, POST_REPLY, project.plane_project_id, issue_id, reply, external_id
            )


def help_html(command: Command) -> str:
    known = "; ".join(
        f"<code>{verb.value}</code> ({html.escape(text)})" for verb, text in HELP_LINES.items()
    )
    if command.verb is None:
        return (
            f"unknown command <code>{html.escape(command.word)}</code>; the commands are: {known}"
        )
    return f"the commands are: {known}"


def post_reply(
    plane: PlaneClient, project_id: str, issue_id: str, reply: str, external_id: str
) -> None:
    """The `post_reply` actor's work: a reply on a work item without a task, once.

    Never waits for the budget in a worker thread and never drops the reply: a busy
    budget or a failure Plane may get over raises TemporaryError (the message is
    retried with backoff); Plane's 409 for the same external id means it is posted.
    """
    budget = plane.budget_for(project_id)
    ticket = budget.try_acquire() if budget is not None else -1
    if not ticket:
        raise TemporaryError("no Plane budget for the reply now")
    client = plane.prepaid(ticket) if ticket > 0 else plane
    try:
        client.create_comment(project_id, issue_id, reply, external_id=external_id)
    except PlaneError as exc:
        if exc.retryable:
            raise TemporaryError(f"reply {external_id} not posted yet: {exc}") from exc
        log.warning("reply %s refused by Plane, not retried: %s", external_id, exc)
