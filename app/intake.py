"""From an HTTP request to a verified ingest event: read whole, verify, then parse.

The body is read completely (it may arrive in many pieces) up to the size limit, with
an idle timeout between pieces. The signature is checked on those raw bytes against
every configured secret before anything is parsed, so an unsigned body is never
parsed. After verification any parse or shape problem is a 400 with the reason. Ids
are checked before they reach a URL or a Redis key: an invalid one is stored with the
reason it is ignored, and never queued.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import StreamReader, web
from aiohttp.http_exceptions import PayloadEncodingError

from app.domain.commands import mentions_command
from app.domain.ids import is_uuid, why_not_uuid
from app.ingest_event import PROCESS, Event, EventMaker, valid_unicode
from app.keys import Keys
from app.plane.hook import Hook, ShapeError, read_hook
from app.plane.webhooks import Verifier
from app.projects import Registry
from app.queue import EVENTS_QUEUE, PROCESS_EVENT, PROCESS_FORGE_EVENT
from app.spool import Entry


class Refused(Exception):
    """A request answered with an error; `outcome` is its metrics label."""

    def __init__(self, status: int, message: str, outcome: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.outcome = outcome
        self.close = close


async def read_body(request: web.Request, limit: int, idle_s: float) -> bytes:
    """The whole body as sent, at most `limit` bytes; no byte for `idle_s` seconds → 408.
    The app does not decompress bodies (`create_app`): a `Content-Encoding` body is
    verified as the bytes it is, so one not signed that way is a 401, never decoded."""
    length = request.content_length
    if length is not None and length > limit:
        raise Refused(413, f"body over {limit} bytes", "too_large", close=True)
    try:
        parts = await _read_parts(request.content, limit, idle_s)
    except PayloadEncodingError as exc:  # a bad chunk, a short body, ...
        raise Refused(400, f"body unreadable: {exc.message}", "incomplete", close=True) from None
    except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
        raise Refused(400, f"body incomplete: {exc}", "incomplete", close=True) from None
    if len(parts) == 1:
        return parts[0]
    return b"".join(parts)


async def _read_parts(content: StreamReader, limit: int, idle_s: float) -> list[bytes]:
    parts: list[bytes] = []
    size = 0
    while not content.at_eof():
        chunk = content.read_nowait()  # what is buffered already: no wait, no timer
        if not chunk:
            try:
                async with asyncio.timeout(idle_s):
                    chunk = await content.readany()
            except TimeoutError:
                raise Refused(
                    408, f"no body data for {idle_s:g}s", "read_timeout", close=True
                ) from None
            if not chunk:
                break
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"body over {limit} bytes", "too_large", close=True)
        parts.append(chunk)
    return parts


def parse_json(body: bytes) -> Any:
    """JSON of a verified body; 400 with the reason otherwise (deep nesting included).

    orjson first (the fast path); what it refuses (NaN, integers past 64 bits, a lone
    surrogate escape such as "\\udfff", ...) is given to the standard library, which
    decides. Its text is then made valid Unicode (a lone surrogate becomes `?`, keys
    included), so nothing taken from the body can fail an answer, a message or a batch.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        value = json.loads(body)
        text = json.dumps(value, ensure_ascii=False)
        valid = valid_unicode(text)
        if valid is not text:
            value = json.loads(valid)
    except RecursionError:
        raise Refused(400, "body is nested too deeply", "bad_json") from None
    except ValueError as exc:
        raise Refused(400, f"body is not JSON: {exc}", "bad_json") from None
    return value


def epoch_text(value: Any) -> str:
    """An ISO time (Plane's `updated_at`) as epoch seconds text; '' when it is not one."""
    if not isinstance(value, str):
        return ""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return f"{when.timestamp():.6f}"


def base_entry(source: str, event: str, body: bytes, digest: str, delivery: str) -> Entry:
    return {
        "source": source,
        "event": event,
        "digest": digest,
        "received_at": "",  # stamped with its batch's time (`Ingest.record`)
        "body": body,
        "delivery": delivery[:200],
        "queue": EVENTS_QUEUE,
        # every stream field present (`ingest_script.STREAM_FIELDS`), '' when it has none
        "field": "",
        "issue": "",
        "actor": "",
        "spooled": "",
        "updated": "",
    }


class PlaneIntake:
    """Verifies and classifies Plane deliveries for a registry."""

    def __init__(self, registry: Registry, default_secret: str, keys: Keys) -> None:
        self.registry = registry
        self.default_secret = default_secret
        self._make = EventMaker(keys)
        own = [
            p.webhook_secret.get_secret_value()
            for p in registry.projects.values()
            if p.webhook_secret
        ]
        self.secrets = list(dict.fromkeys(s for s in [default_secret, *own] if s))
        self._verifier = Verifier(self.secrets)
        # Plane project id -> (project name, the secret its deliveries must be signed with)
        self._projects = {
            p.plane_project_id: (
                p.name,
                p.webhook_secret.get_secret_value() if p.webhook_secret else default_secret,
            )
            for p in registry.projects.values()
        }

    def event(self, body: bytes, headers: Any) -> Event:
        verified = self._verifier.check(body, headers.get("X-Plane-Signature"))
        if verified is None:
            raise Refused(401, "invalid signature", "bad_signature")
        hook = self._parse(body)
        event, action, data, field, actor = hook
        project_id = hook.project_id
        project = self._projects.get(project_id) if project_id else None
        if project is not None and project[1] not in verified.secrets:
            raise Refused(401, "signature does not match the project's secret", "bad_signature")
        issue = hook.issue_id
        return self._make.plane(  # straight to the script's meta: this runs for every delivery
            verified.digest,
            headers.get("X-Plane-Delivery", "")[:200],
            event,
            action,
            field or "",  # stream values are text: '' when there is none
            project[0] if project else project_id or "",
            issue or "",
            actor,
            self._outcome(hook, project is not None),
            epoch_text(data.get("updated_at")),
            body,
            EVENTS_QUEUE,
            PROCESS_EVENT,
            {
                "project_id": project_id,
                "issue_id": issue,
                "event": event,
                "action": action,
                "field": field,
                "actor_id": actor,
            },
        )

    @staticmethod
    def _parse(body: bytes) -> Hook:
        try:
            return read_hook(parse_json(body))
        except ShapeError as exc:
            raise Refused(400, f"unexpected webhook shape: {exc}", "bad_shape") from None

    @staticmethod
    def _outcome(hook: Hook, known: bool) -> str:
        if not known:
            return "unknown_project"
        if hook.event == "issue_comment" and hook.action == "created":
            return PlaneIntake._comment_outcome(hook)
        if hook.event != "issue":
            return f"ignored: {hook.event}/{hook.action}/{hook.field or '-'}"
        item = hook.data.get("id")
        if not is_uuid(item):
            return f"ignored: {why_not_uuid('work item id', item)}"
        if hook.field in ("state", "state_id") or hook.action == "created":
            return PROCESS  # a state change (`Hook.is_state_change`) or a new work item
        return f"ignored: {hook.event}/{hook.action}/{hook.field or '-'}"

    @staticmethod
    def _comment_outcome(hook: Hook) -> str:
        """A new comment is queued when it may hold a `/planeflow` command."""
        invalid = why_not_uuid("work item id", hook.data.get("issue"))
        if invalid:
            return f"ignored: {invalid}"
        if hook.data.get("external_source") == "planeflow":
            return "ignored: issue_comment/created (planeflow's own comment)"
        text = hook.data.get("comment_html")
        if not isinstance(text, str) or not mentions_command(text):
            return "ignored: issue_comment/created (no /planeflow command)"
        return PROCESS


class GiteaIntake:
    def __init__(self, registry: Registry, secret: str, keys: Keys) -> None:
        self.registry = registry
        self.secret = secret
        self._verifier = Verifier([secret])
        self._make = EventMaker(keys)

    def event(self, body: bytes, headers: Any) -> Event:
        verified = self._verifier.check(body, headers.get("X-Gitea-Signature"))
        if verified is None:
            raise Refused(401, "invalid signature", "bad_signature")
        raw = parse_json(body)
        repo = raw.get("repository") if isinstance(raw, dict) else None
        if not isinstance(repo, dict) or not isinstance(repo.get("full_name"), str):
            raise Refused(400, "expected a Gitea webhook with repository.full_name", "bad_shape")
        # header text (aiohttp keeps undecodable bytes as lone surrogates) made valid
        event = valid_unicode(str(headers.get("X-Gitea-Event", ""))[:100])
        name = repo["full_name"]
        project = next((p for p in self.registry.projects.values() if p.gitea_repo == name), None)
        if project is None:
            outcome = "unknown_project"
        elif event in ("pull_request", "status"):
            outcome = PROCESS
        else:
            outcome = f"ignored: {event}"
        delivery = valid_unicode(headers.get("X-Gitea-Delivery", ""))
        entry = base_entry("gitea", event, body, verified.digest, delivery)
        entry.update(
            action=str(raw.get("action", ""))[:100],
            project=project.name if project else name,
            outcome=outcome,
            actor_name=PROCESS_FORGE_EVENT,
            payload={
                "project": project.name if project else None,
                "event": event,
                "repo": name,
                "branches": gitea_branches(raw),
            },
        )
        return self._make.from_entry(entry)


def gitea_branches(raw: dict[str, Any]) -> list[str]:
    """The branches a Gitea event is about (a pull request's head, or a status's branches)."""
    pull = raw.get("pull_request")
    if isinstance(pull, dict) and isinstance(pull.get("head"), dict):
        ref = pull["head"].get("ref")
        return [ref] if isinstance(ref, str) else []
    branches = raw.get("branches")
    if isinstance(branches, list):
        return [
            b["name"] for b in branches if isinstance(b, dict) and isinstance(b.get("name"), str)
        ]
    return []
