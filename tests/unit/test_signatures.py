"""Signature checks: the precomputed-pad HMAC is the standard library's, for every key
length; headers that cannot be signatures never match; every secret is reported."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from app.plane.webhooks import Verifier, signature

BODY = b'{"event": "issue", "data": {"name": "caf\xc3\xa9"}}'


@pytest.mark.parametrize("length", [1, 12, 63, 64, 65, 200])
def test_digest_is_hmac_sha256_for_any_key_length(length: int) -> None:
    secret = "k" * length
    expected = hmac.new(secret.encode(), BODY, hashlib.sha256).hexdigest()
    verified = Verifier([secret]).check(BODY, expected)
    assert verified is not None
    assert verified.digest == expected == signature(secret, BODY)
    assert verified.secrets == (secret,)


def test_upper_case_hex_matches_and_the_digest_is_lower_case() -> None:
    verified = Verifier(["s"]).check(BODY, signature("s", BODY).upper())
    assert verified is not None and verified.digest == signature("s", BODY)


@pytest.mark.parametrize(
    "header",
    [None, "", " ", "sha256=" + signature("s", BODY), "0" * 64, "é" * 64, "zz" * 32, "0" * 66],
)
def test_headers_that_are_not_the_signature_never_match(header: str | None) -> None:
    assert Verifier(["s"]).check(BODY, header) is None


def test_every_secret_that_matches_is_reported_and_empty_ones_ignored() -> None:
    verifier = Verifier(["", "a", "b", "a"])
    verified = verifier.check(BODY, signature("b", BODY))
    assert verified is not None and verified.secrets == ("b",)
    assert Verifier([""]).check(BODY, signature("", BODY)) is None


def test_a_changed_body_does_not_match() -> None:
    assert Verifier(["s"]).check(BODY + b" ", signature("s", BODY)) is None
