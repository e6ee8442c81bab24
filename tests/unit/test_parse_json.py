"""A verified body's JSON: what orjson refuses goes to the standard library, whose text is
then made valid Unicode."""

from __future__ import annotations

import orjson
import pytest

from app.intake import Refused, parse_json


def test_lone_surrogates_are_replaced_in_values_and_keys_at_any_depth() -> None:
    raw = b'{"a": "\\udfff", "\\ud800k": [1, {"x": "ok\\ud800"}], "n": 12345678901234567890123}'
    value = parse_json(raw)
    assert value == {"a": "?", "?k": [1, {"x": "ok?"}], "n": 12345678901234567890123}
    deep = parse_json(b"[" * 900 + b'"\\udfff"' + b"]" * 900)
    for _ in range(900):
        deep = deep[0]
    assert deep == "?"


def test_valid_text_is_kept_and_a_pair_stays_one_character() -> None:
    value = parse_json(b'{"emoji": "\\ud83d\\ude00", "big": 1e400, "e": "\\u00e9"}')
    assert value["emoji"] == "\U0001f600" and value["e"] == "é"
    assert orjson.dumps({k: v for k, v in value.items() if k != "big"})  # valid UTF-8


@pytest.mark.parametrize("raw", [b"[" * 5000 + b"]" * 5000, b"{", b"\xff"])
def test_what_neither_parser_takes_is_a_400(raw: bytes) -> None:
    with pytest.raises(Refused) as refused:
        parse_json(raw)
    assert refused.value.status == 400
