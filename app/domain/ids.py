"""Identifier checks for what arrives from the wire, before it reaches a URL or a key.

Plane's ids are UUIDs. Anything else in an id field (a path, a NUL byte, a very long
string) is refused with a reason the caller records; it is never retried.
"""

from __future__ import annotations

import re

_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def is_uuid(value: object) -> bool:
    """True for a canonical UUID string (8-4-4-4-12 hex digits), any case."""
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


def why_not_uuid(name: str, value: object) -> str | None:
    """None when `value` is a UUID, else a short reason naming the field (value shortened)."""
    if is_uuid(value):
        return None
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{name} {shown} is not a Plane id (UUID)"
