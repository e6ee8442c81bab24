"""An event's meta as the receiver builds it is the meta its spool record gives back, so a
spooled event is stored as it would have been."""

from __future__ import annotations

import json

from app.ingest_event import AT, PROCESS, EventMaker, entry_of
from app.ingest_script import answer_of
from app.keys import Keys
from app.queue import EVENTS_QUEUE, PROCESS_EVENT

MAKE = EventMaker(Keys("pf:"))
ISSUE = "00000000-0000-0000-0000-00000000000a"


def plane(outcome: str = PROCESS, event: str = "issue", body: bytes = b'{"x": 1}') -> object:
    return MAKE.plane(
        "ab" * 32,
        "delivery-1",
        event,
        "updated",
        "state",
        "demo",
        ISSUE,
        "human",
        outcome,
        "1764000000.000000",
        body,
        EVENTS_QUEUE,
        PROCESS_EVENT,
        {"issue_id": ISSUE, "field": None},
    )


def test_a_spool_record_gives_back_the_same_meta() -> None:
    for event in (
        plane(),
        plane("ignored: issue/updated/x"),
        plane("unknown_project"),
        plane(event="issue_comment"),
    ):
        record = json.loads(json.dumps(entry_of(event)))  # what the spool keeps
        again = MAKE.from_entry(record)
        assert again.meta == event.meta
        assert (again.body, again.source, again.outcome) == (event.body, "plane", event.outcome)


def test_a_state_event_folds_and_is_queued() -> None:
    event = plane()
    assert event.fold
    assert event.meta[:5] == [
        "pf:delivery:" + "ab" * 32,
        f"pf:fold:{ISSUE}",
        f"pf:snapshot:{ISSUE}",
        "dramatiq:events",
        "dramatiq:events.msgs",
    ]
    assert event.meta[AT["received_at"]] == ""  # its batch stamps it


def test_what_is_not_processed_is_neither_queued_nor_folded() -> None:
    ignored = plane("ignored: issue/updated/priority")
    assert not ignored.fold and ignored.meta[1:7] == ["-", "-", "-", "-", "", ""]
    assert ignored.meta[7] == "demo"  # its project's last-webhook time is kept
    assert plane("unknown_project").meta[7] == ""
    assert not plane(event="issue_comment").fold  # comments are never folded


def test_a_body_that_is_not_utf8_is_replaced() -> None:
    assert plane(body=b'{"x": "\xff"}').body == '{"x": "\ufffd"}'.encode()


def test_answers_are_json_with_their_outcome() -> None:
    stored = answer_of(plane(), "1|1764000000000-0|")
    assert (stored.status, stored.outcome) == (202, PROCESS)
    assert stored.json() == {"accepted": True, "event_id": "1764000000000-0", "outcome": PROCESS}
    odd = "ignored: work item id '\"../x\\' is not a Plane id (UUID)"
    assert answer_of(plane(odd), "1|1-0|").json()["outcome"] == odd  # escaped, not broken
    folded = answer_of(plane(), "2|1-1|1-0")
    assert folded.outcome == "folded" and folded.json()["folded_into"] == "1-0"
    again = answer_of(plane(), "0|1-0|")
    assert (again.status, again.outcome) == (200, "duplicate")
    assert again.json() == {"duplicate": True, "event_id": "1-0"}
