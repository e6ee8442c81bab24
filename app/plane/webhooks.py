"""Webhook signatures: hex HMAC-SHA256 of the raw body, compared in constant time.

Plane sends it in `X-Plane-Signature`, Gitea in `X-Gitea-Signature`; both are the
lowercase hex digest of the exact bytes received (never re-serialised JSON).
"""

from __future__ import annotations

import hashlib
import hmac


def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """True when `header` is the signature of `body`; False for an empty secret."""
    if not secret or not header:
        return False
    return hmac.compare_digest(signature(secret, body), header.strip().lower())


def body_sha256(body: bytes) -> str:
    """The dedup key of a delivery: Plane's retries resend identical bytes."""
    return hashlib.sha256(body).hexdigest()
