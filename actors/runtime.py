"""The worker process's services, set once at boot and read by the thin actors."""

from __future__ import annotations

from app.services import Services

_services: Services | None = None


def init(services: Services) -> None:
    global _services
    _services = services


def services() -> Services:
    if _services is None:
        raise RuntimeError("worker runtime not initialised (actors.runtime.init)")
    return _services
