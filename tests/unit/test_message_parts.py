"""The receiver's Dramatiq messages, joined from their pieces, are Dramatiq's own text."""

from __future__ import annotations

import json

import dramatiq
from dramatiq.encoder import JSONEncoder

from app.queue import EVENTS_QUEUE, PROCESS_EVENT, message_parts

EVENT_ID = "1764694800000-7"


def test_pieces_joined_with_the_event_id_are_what_dramatiq_encodes() -> None:
    payload = {"project_id": "p", "issue_id": "i", "event": "issue", "field": None}
    a, b, c, d = message_parts(EVENTS_QUEUE, PROCESS_EVENT, payload)
    joined = a + EVENT_ID + b + EVENT_ID + c + EVENT_ID + d
    timestamp = json.loads(joined)["message_timestamp"]
    message: dramatiq.Message[None] = dramatiq.Message(
        queue_name=EVENTS_QUEUE,
        actor_name=PROCESS_EVENT,
        args=({"event_id": EVENT_ID, **payload},),
        kwargs={},
        # RedisBroker.enqueue adds its id to the options before it encodes the message
        options={"redis_message_id": EVENT_ID},
        message_id=EVENT_ID,
        message_timestamp=timestamp,
    )
    assert joined.encode() == JSONEncoder().encode(message.asdict())


def test_non_ascii_text_is_the_same_json_as_dramatiq_writes() -> None:
    payload = {"note": '"quoted" é'}
    a, b, c, d = message_parts(EVENTS_QUEUE, PROCESS_EVENT, payload)
    decoded = json.loads(a + EVENT_ID + b + EVENT_ID + c + EVENT_ID + d)
    assert decoded["args"] == [{"event_id": EVENT_ID, "note": '"quoted" é'}]
    assert decoded["options"] == {"redis_message_id": EVENT_ID}
