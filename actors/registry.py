"""Declares every actor on a broker."""

from __future__ import annotations

import dramatiq

from actors import events, reconcile


def register_all(broker: dramatiq.Broker) -> None:
    events.register(broker)
    reconcile.register(broker)
