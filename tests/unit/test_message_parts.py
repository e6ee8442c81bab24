"""The receiver's Dramatiq messages, joined from their pieces, are Dramatiq's own text."""

from __future__ import annotations

import json

import dramatiq
from dramatiq.encoder import JSONEncoder

from app.queue import EVENTS_QUEUE, PROCESS_EVENT, join_message, message_args, message_head

EVENT_ID = "1764694800000-7"
STAMP = 1764694800123


def joined(payload: dict[str, object]) -> str:
    head = message_head(EVENTS_QUEUE, PROCESS_EVENT)
    return join_message(head, message_args(payload), EVENT_ID, STAMP)


def test_pieces_joined_with_the_event_id_are_what_dramatiq_encodes() -> None:
    payload = {"project_id": "p", "issue_id": "i", "event": "issue", "field": None}
    message: dramatiq.Message[None] = dramatiq.Message(
        queue_name=EVENTS_QUEUE,
        actor_name=PROCESS_EVENT,
        args=({"event_id": EVENT_ID, **payload},),
        kwargs={},
        # RedisBroker.enqueue adds its id to the options before it encodes the message
        options={"redis_message_id": EVENT_ID},
        message_id=EVENT_ID,
        message_timestamp=STAMP,
    )
    assert joined(payload).encode() == JSONEncoder().encode(message.asdict())


def test_non_ascii_text_is_the_same_json_as_dramatiq_writes() -> None:
    decoded = json.loads(joined({"note": '"quoted" é'}))
    assert decoded["args"] == [{"event_id": EVENT_ID, "note": '"quoted" é'}]
    assert decoded["options"] == {"redis_message_id": EVENT_ID}
    assert decoded["message_timestamp"] == STAMP


def test_an_empty_payload_still_makes_valid_json() -> None:
    assert json.loads(joined({}))["args"] == [{"event_id": EVENT_ID}]
