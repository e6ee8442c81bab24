"""Webhook signatures: hex HMAC-SHA256 of the raw body, compared in constant time.

Plane sends it in `X-Plane-Signature`, Gitea in `X-Gitea-Signature`; both are the
lowercase hex digest of the exact bytes received (never re-serialised JSON). A header
that is missing, not ASCII or not 64 hex digits never matches; nothing here raises.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Iterable


def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def header_digest(header: str | None) -> bytes | None:
    """The 32 bytes a signature header names, or None when it cannot be a signature
    (missing, not 64 hex digits, not ASCII)."""
    if not header:
        return None
    text = header.strip()
    if len(text) != 64 or not text.isascii():
        return None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if len(raw) == 32 else None  # fromhex skips spaces between pairs


def matching(secrets: Iterable[str], body: bytes, header: str | None) -> set[str]:
    """The secrets (non-empty ones) whose signature of `body` is `header`.

    Every secret is compared, in constant time each, whatever matched before.
    """
    wanted = header_digest(header)
    if wanted is None:
        return set()
    found = set()
    for secret in secrets:
        if secret:
            mac = _keyed(secret).copy()  # the key's pads are computed once per secret
            mac.update(body)
            if hmac.compare_digest(mac.digest(), wanted):
                found.add(secret)
    return found


@functools.lru_cache(maxsize=64)
def _keyed(secret: str) -> hmac.HMAC:
    return hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256)


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """True when `header` is the signature of `body`; False for an empty secret."""
    return bool(matching([secret], body, header))


def body_sha256(body: bytes) -> str:
    """The dedup key of a delivery: Plane's retries resend identical bytes."""
    return hashlib.sha256(body).hexdigest()
