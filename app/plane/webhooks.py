"""Webhook signatures: hex HMAC-SHA256 of the raw body, compared in constant time.

Plane sends it in `X-Plane-Signature`, Gitea in `X-Gitea-Signature`; both are the
lowercase hex digest of the exact bytes received (never re-serialised JSON). A header
that is missing, not ASCII or not 64 hex digits never matches; nothing here raises.

A verified signature is also the delivery's fingerprint (`Verified.digest`): Plane's
retries resend the same bytes, signed with the same secret, so they carry the same
digest, and no body is hashed a second time to recognise them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any, NamedTuple

_BLOCK = 64  # SHA-256's block size: HMAC's key pads are one block each
_INNER = bytes(x ^ 0x36 for x in range(256))
_OUTER = bytes(x ^ 0x5C for x in range(256))


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


class Verified(NamedTuple):
    digest: str  # the signature, lowercase hex: the delivery's fingerprint
    secrets: tuple[str, ...]  # every configured secret it is the signature under


class Verifier:
    """Checks signatures against a fixed set of secrets.

    HMAC(key, body) is SHA-256(outer pad + SHA-256(inner pad + body)); each secret's
    two pads are hashed once here, so a check costs one pass over the body per secret
    and two copies of a hash state (the standard library's HMAC object costs half as
    much again per check). Every secret is compared, in constant time each, whatever
    matched before.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self._keys = [(secret, *_pads(secret)) for secret in dict.fromkeys(secrets) if secret]

    def check(self, body: bytes, header: str | None) -> Verified | None:
        """The signature's digest and the secrets it matches; None when none matches."""
        wanted = header_digest(header)
        if wanted is None:
            return None
        found: list[str] = []
        for secret, inner, outer in self._keys:
            mac = inner.copy()
            mac.update(body)
            tag = outer.copy()
            tag.update(mac.digest())
            if hmac.compare_digest(tag.digest(), wanted):
                found.append(secret)
        return Verified(wanted.hex(), tuple(found)) if found else None


def _pads(secret: str) -> tuple[Any, Any]:
    key = secret.encode("utf-8")
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return hashlib.sha256(key.translate(_INNER)), hashlib.sha256(key.translate(_OUTER))
