"""Commands in a Plane comment: `/planeflow <verb>` at the start of a line. No I/O.

Plane sends a comment as HTML (`comment_html`: `<p>` per paragraph, `<br>`, lists,
`<blockquote>`, `<pre>`). A command is a line whose text, once the tags are taken out
and the entities decoded, starts with `/planeflow` followed by a word. Quoted text
(`<blockquote>`) and code blocks (`<pre>`) are someone else's words or an example, so
they hold no command. At most `MAX_COMMANDS` are taken from one comment.

`reply_text_is_safe` is the loop guard for planeflow's own replies: no line of a reply
may start with a command, so a reply that came back as a comment webhook (from a user
planeflow failed to recognise as its own) could never act.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from enum import StrEnum
from html.parser import HTMLParser

PREFIX = "/planeflow"
MAX_COMMANDS = 5
_BLOCKS = frozenset(
    {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "hr"}
)
_QUOTED = frozenset({"blockquote", "pre"})
_UNSAFE = re.compile(r"[^\w.-]")
_VERBS = frozenset(("retry", "cancel", "status", "explain", "help"))
_COMMAND = re.compile(r"^/planeflow(?:\s+(\S+))?(?:\s+(.*))?$", re.IGNORECASE)


class Verb(StrEnum):
    RETRY = "retry"
    CANCEL = "cancel"
    STATUS = "status"
    EXPLAIN = "explain"
    HELP = "help"


HELP_LINES: dict[Verb, str] = {
    Verb.RETRY: "resume a blocked task at the stage that failed",
    Verb.CANCEL: "cancel the task; its running job is stopped",
    Verb.STATUS: "reply with the stage, the active job and the last decisions",
    Verb.EXPLAIN: "reply with the decisions taken on the work item, with their reasons",
    Verb.HELP: "reply with this list",
}


@dataclass(frozen=True)
class Command:
    verb: Verb | None  # None: a word planeflow does not know (answered with the list)
    word: str  # as written (lower case, letters, digits, '-', '_', '.' only), for the answer
    line: str


@dataclass(frozen=True)
class Commands:
    """The commands of one comment, and how many past MAX_COMMANDS were left out."""

    found: list[Command]
    left_out: int = 0


class _Lines(HTMLParser):
    """The comment's text as lines: block tags end a line; quoted blocks are dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._current: list[str] = []
        self._quoted = 0

    def _end_line(self) -> None:
        text = "".join(self._current)
        self._current = []
        for line in text.split("\n"):
            self.lines.append(line)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _QUOTED:
            self._end_line()
            self._quoted += 1
        elif tag in _BLOCKS:
            self._end_line()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self._end_line()

    def handle_endtag(self, tag: str) -> None:
        if tag in _QUOTED:
            if self._quoted:
                self._quoted -= 1
            self._current = []  # what was quoted is not a line of this comment
        elif tag in _BLOCKS:
            self._end_line()

    def handle_data(self, data: str) -> None:
        if not self._quoted:
            self._current.append(data)

    def close(self) -> None:
        super().close()
        self._end_line()


def comment_lines(comment_html: str) -> list[str]:
    """The comment's lines of text (stripped; empty ones dropped), quotes excluded."""
    parser = _Lines()
    try:
        parser.feed(comment_html)
        parser.close()
    except (AssertionError, ValueError):  # html.parser gives up on some broken markup
        text = html.unescape(re.sub(r"<[^>]+>", "\n", comment_html))
        return [line.strip() for line in text.splitlines() if line.strip()]
    # NBSP (Plane's editor writes &nbsp; for spaces it keeps) is a space here
    return [line.replace("\xa0", " ").strip() for line in parser.lines if line.strip()]


def parse_commands(comment_html: str) -> list[Command]:
    """Every `/planeflow <verb>` line of a comment, in order, at most MAX_COMMANDS."""
    return read_commands(comment_html).found


def read_commands(comment_html: str) -> Commands:
    """The `/planeflow <verb>` lines of a comment: the first MAX_COMMANDS, in order,
    and the count of those past it."""
    found: list[Command] = []
    left_out = 0
    for line in comment_lines(comment_html):
        if not line.lower().startswith(PREFIX):
            continue
        match = _COMMAND.match(line)
        if match is None:  # e.g. "/planeflowing": not our command
            continue
        if len(found) >= MAX_COMMANDS:
            left_out += 1
            continue
        # Only plain characters are echoed in the reply (no markup, no bidi controls).
        word = _UNSAFE.sub("", (match.group(1) or "help").lower())[:40] or "?"
        verb = Verb(word) if word in _VERBS else None
        found.append(Command(verb, word, line[:200]))
    return Commands(found, left_out)


def mentions_command(comment_html: str) -> bool:
    """A cheap first look (the receiver's): could the comment hold a command?"""
    return PREFIX in comment_html.lower()


def reply_text_is_safe(reply_html: str) -> bool:
    """True when no line of a reply starts with a command (the loop guard)."""
    return not any(line.lower().startswith(PREFIX) for line in comment_lines(reply_html))
