"""Commands read out of a Plane comment's HTML, and the loop guard for our replies."""

from __future__ import annotations

import pytest

from app.domain.commands import (
    MAX_COMMANDS,
    Verb,
    mentions_command,
    parse_commands,
    read_commands,
    reply_text_is_safe,
)


def verbs(html: str) -> list[str | None]:
    return [c.verb.value if c.verb else c.word for c in parse_commands(html)]


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>/planeflow retry</p>", ["retry"]),
        ("<p>/planeflow  STATUS please</p>", ["status"]),
        ("<p>first line<br>/planeflow explain</p>", ["explain"]),
        ("<p>&nbsp;/planeflow&nbsp;cancel</p>", ["cancel"]),
        ("<ul><li>/planeflow retry</li><li>/planeflow status</li></ul>", ["retry", "status"]),
        ("<p>/planeflow</p>", ["help"]),
        ("<p>/planeflow frobnicate</p>", ["frobnicate"]),
    ],
)
def test_a_command_starts_a_line(html: str, expected: list[str]) -> None:
    assert verbs(html) == expected


@pytest.mark.parametrize(
    "html",
    [
        "<p>please /planeflow retry</p>",  # not at the start of the line
        "<blockquote><p>/planeflow cancel</p></blockquote>",  # someone else's words
        "<pre>/planeflow retry</pre>",  # an example
        "<p>/planeflowing along</p>",
        "<p>planeflow retry</p>",
    ],
)
def test_no_command_elsewhere(html: str) -> None:
    assert parse_commands(html) == []


def test_an_unknown_word_is_kept_as_plain_characters() -> None:
    (command,) = parse_commands("<p>/planeflow fr\u202eob<b>x</b></p>")
    assert command.verb is None and command.word == "frobx"
    (verb_only,) = parse_commands("<p>/planeflow \u202e</p>")
    assert verb_only.word == "?"


def test_at_most_five_commands_and_the_rest_counted() -> None:
    found = read_commands("".join("<p>/planeflow status</p>" for _ in range(7)))
    assert len(found.found) == MAX_COMMANDS and found.left_out == 2
    assert all(c.verb is Verb.STATUS for c in found.found)


def test_the_receivers_first_look_is_generous() -> None:
    assert mentions_command("<p>/PlaneFlow status</p>")
    assert not mentions_command("<p>looks good</p>")


def test_a_reply_never_starts_a_line_with_a_command() -> None:
    assert reply_text_is_safe("<p>planeflow, for ada:</p><ul><li>planeflow <code>retry</code>")
    assert not reply_text_is_safe("<p>ok</p><p>/planeflow retry</p>")
    assert not reply_text_is_safe("ok<br>/planeflow cancel")
