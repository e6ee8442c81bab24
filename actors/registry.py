"""Declares every actor on a broker."""

from __future__ import annotations

import dramatiq

from actors import events, jobs, outbox, reconcile


def register_all(broker: dramatiq.Broker) -> None:
    events.register(broker)
    jobs.register(broker)
    reconcile.register(broker)
    outbox.register(broker)
