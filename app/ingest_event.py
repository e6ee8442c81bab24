"""One verified webhook as the ingest script takes it: an `Event` (its meta and its body).

The meta is a list of short strings: the keys the event touches, its Dramatiq message's
pieces, and its `pf:events` values (`META_HEAD`, then `STREAM_FIELDS`). The receiver
builds it once per request (`EventMaker.plane`: no dict in between, it runs for every
delivery); anything else that is stored (a Gitea delivery, a spool record of any
version) is an `Entry` dict first and made an Event by `EventMaker.from_entry`.
`entry_of` turns an Event back into an Entry for the spool, whose records are JSON.
"""

from __future__ import annotations

import operator
from typing import Any, NamedTuple

import orjson

from app.keys import Keys
from app.queue import message_args, message_head, queue_keys
from app.spool import Entry

PROCESS = "process"
STREAM_FIELDS = (  # `pf:events` fields, in this order; the body goes last: the long one
    "source",
    "event",
    "action",
    "field",
    "project",
    "issue",
    "actor",
    "delivery",
    "digest",  # the verified signature: the dedup marker's name (`app.plane.webhooks`)
    "received_at",  # the batch's time ('' until its batch stamps it)
    "outcome",
    "spooled",
    "updated",  # data.updated_at as epoch seconds ('' when absent): the snapshot's age
)
META_HEAD = (
    "marker",  # pf:delivery:<digest>
    "fold_key",  # pf:fold:<issue>, '-' when the event does not fold
    "snap_key",  # pf:snapshot:<issue>, '-' when the event does not fold
    "qlist",  # the Dramatiq queue's list, '-' when not queued
    "qmsgs",  # and its message hash
    "head",  # the message's head ('' when not queued) and its arguments' text
    "args",  # (`queue.message_head`, `queue.message_args`)
    "last_project",  # the project whose last-webhook time to record, '' for none
)
V0 = len(META_HEAD)  # the stream values follow the head
AT = {name: V0 + n for n, name in enumerate(STREAM_FIELDS)}  # 0-based places in a meta
RECEIVED = AT["received_at"]


class Event(NamedTuple):
    meta: list[str]  # `META_HEAD` then `STREAM_FIELDS` values, all text
    body: bytes  # valid UTF-8
    source: str  # "plane" / "gitea": the metrics label
    outcome: str
    project: str  # the project's name, or the id it came with (logs)
    # what a spool record needs besides the meta:
    queue: str
    actor_name: str
    payload: dict[str, Any] | None
    fold: bool


class EventMaker:
    """Builds Events with one key prefix (`Keys`); the queue's keys and each message head
    are made once."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self._delivery, self._fold, self._snapshot = (
            keys.delivery(""),
            keys.fold(""),
            keys.snapshot(""),
        )

    def plane(
        self,
        digest: str,
        delivery: str,
        event: str,
        action: str,
        field: str,
        project: str,
        issue: str,
        actor: str,
        outcome: str,
        updated: str,
        body: bytes,
        queue: str,
        actor_name: str,
        payload: dict[str, Any],
    ) -> Event:
        """A Plane delivery (all text; '' for what it has none of). A state event that is
        processed folds; one of an unknown project records no last-webhook time."""
        fold = outcome == PROCESS and event == "issue"  # comments are never folded
        if outcome == PROCESS:
            list_key, msgs_key = queue_keys(queue)
            head, args = message_head(queue, actor_name), message_args(payload)
        else:
            list_key = msgs_key = "-"
            head = args = ""
        meta = [
            self._delivery + digest,
            self._fold + issue if fold else "-",
            self._snapshot + issue if fold else "-",
            list_key,
            msgs_key,
            head,
            args,
            project if outcome != "unknown_project" else "",
            "plane",
            event,
            action,
            field,
            project,
            issue,
            actor,
            delivery,
            digest,
            "",
            outcome,
            "",
            updated,
        ]
        return Event(meta, _utf8(body), "plane", outcome, project, queue, actor_name, payload, fold)

    def from_entry(self, entry: Entry) -> Event:
        """An Entry (a Gitea delivery, or a spool record of this or an older version; a
        missing value is stored as '')."""
        outcome = entry["outcome"]
        queued = outcome == PROCESS
        queue = str(entry.get("queue") or "")
        actor_name = str(entry.get("actor_name") or "")
        payload = entry.get("payload")
        if queued:
            head, args = message_head(queue, actor_name), message_args(payload or {})
            list_key, msgs_key = queue_keys(queue)
        else:
            head, args, list_key, msgs_key = "", "", "-", "-"
        fold = queued and bool(entry.get("fold"))
        issue = _text(entry.get("issue"))
        last_webhook = entry["source"] == "plane" and outcome != "unknown_project"
        try:
            values = [_text(value) for value in _stream_values(entry)]
        except KeyError:  # a spool record of an older version
            values = [_text(_older(entry, name)) for name in STREAM_FIELDS]
        meta = [
            self.keys.delivery(values[AT["digest"] - V0]),
            self.keys.fold(issue) if fold else "-",
            self.keys.snapshot(issue) if fold else "-",
            list_key,
            msgs_key,
            head,
            args,
            str(entry["project"]) if last_webhook else "",
            *values,
        ]
        project = _text(entry.get("project"))
        return Event(
            meta,
            body_bytes(entry.get("body")),
            str(entry["source"]),
            str(outcome),
            project,
            queue,
            actor_name,
            payload,
            fold,
        )


def entry_of(event: Event) -> Entry:
    """The Event as a spool record (JSON: the body as text)."""
    entry: Entry = dict(zip(STREAM_FIELDS, event.meta[V0:], strict=True))
    entry.update(
        body=event.body.decode("utf-8", "replace"),
        queue=event.queue,
        actor_name=event.actor_name,
        payload=event.payload,
        fold=event.fold,
    )
    return entry


_stream_values = operator.itemgetter(*STREAM_FIELDS)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _older(entry: Entry, name: str) -> Any:
    if name == "digest":  # named `sha256` (of the body) before the signature was used
        return entry.get("digest") or entry["sha256"]
    return entry.get(name)


def _utf8(body: bytes) -> bytes:
    """The body as valid UTF-8 (undecodable bytes replaced): Redis keeps it as text."""
    return body if body.isascii() else body.decode("utf-8", "replace").encode("utf-8")


def body_bytes(body: Any) -> bytes:
    """A body as the script takes it: bytes (as received) or text (a spool record)."""
    if isinstance(body, bytes):
        return _utf8(body)
    return str(body or "").encode("utf-8", "replace")


def encode_metas(metas: list[list[str]]) -> bytes:
    """The batch's metas as one JSON argument. Text that is not valid UTF-8 (a lone
    surrogate, from a header's undecodable bytes or a JSON escape) is replaced, never
    allowed to fail the batch it shares with other requests."""
    try:
        return orjson.dumps(metas)
    except TypeError:
        return orjson.dumps([[valid_unicode(value) for value in meta] for meta in metas])


def valid_unicode(text: str) -> str:
    """`text` as valid Unicode: a lone surrogate (a header's undecodable bytes, kept so by
    aiohttp, or a JSON escape such as "\\udfff") is replaced by `?`."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text
