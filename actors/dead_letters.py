"""Notes why a message was dead-lettered, for the operator who may requeue it.

Dramatiq's Redis broker keeps a dead letter's data as it was enqueued, without the
error that killed it. When a message is rejected for good (its retries used up, or
none allowed), this middleware keeps the error's last line in `pf:dead-letter:<id>`
for as long as the broker keeps the dead letter (7 days), and logs a warning naming
the actor and its arguments.
"""

from __future__ import annotations

import logging
from typing import Any

from dramatiq.middleware import Middleware

from app.keys import Keys

log = logging.getLogger(__name__)
KEEP_S = 7 * 24 * 3600  # dramatiq's default dead_message_ttl


class DeadLetterNotes(Middleware):  # type: ignore[misc]
    def __init__(self, keys: Keys) -> None:
        self.keys = keys

    def after_nack(self, broker: Any, message: Any) -> None:
        broker_id = message.options.get("redis_message_id")
        error = getattr(message, "_exception", None)
        why = f"{type(error).__name__}: {error}" if error is not None else "rejected"
        log.warning(
            "message %s %s%r dead-lettered on %s: %s",
            broker_id,
            message.actor_name,
            tuple(message.args),
            message.queue_name,
            why,
        )
        if not broker_id:
            return
        try:
            broker.client.set(self.keys.dead_letter(broker_id), why[:500], ex=KEEP_S)
        except Exception as exc:  # the note is a courtesy; the dead letter itself is kept
            log.warning("cannot note why message %s died: %s", broker_id, exc)
