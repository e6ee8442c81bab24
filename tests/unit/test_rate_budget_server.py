"""The budget follows what Plane says is left for the key (fake Redis, a fake clock, a
fake server counting the key's requests in its sliding minute)."""

from __future__ import annotations

from collections import deque

import fakeredis
import pytest

from app.domain.errors import TemporaryError
from app.plane.ratelimit import Priority, RateBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Server:
    """The key's window on Plane's side: our requests and another client's."""

    def __init__(self, clock: Clock, limit: int = 60, others: int = 0) -> None:
        self.clock, self.limit = clock, limit
        self.hits: deque[float] = deque([clock.now] * others)
        self.refused = 0

    def call(self) -> int | None:
        """Remaining after this request, or None for a 429."""
        while self.hits and self.hits[0] <= self.clock.now - 60:
            self.hits.popleft()
        if len(self.hits) >= self.limit:
            self.refused += 1
            return None
        self.hits.append(self.clock.now)
        return self.limit - len(self.hits)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def budget(clock: Clock, per_minute: int = 50, **kw: object) -> RateBudget:
    client = fakeredis.FakeRedis(decode_responses=True)
    return RateBudget(client, "t:rate", per_minute=per_minute, clock=clock, **kw)  # type: ignore[arg-type]


def serve(b: RateBudget, server: Server, tries: int = 500) -> int:
    """Requests granted and answered one after another, until the budget says wait."""
    sent = 0
    for _ in range(tries):
        ticket = b.try_acquire()
        if not ticket:
            break
        remaining = server.call()
        if remaining is None:
            b.hold(1)
        else:
            b.observe(ticket, remaining)
        sent += 1
    return sent


def test_without_a_reading_the_configured_limit_holds(clock: Clock) -> None:
    b = budget(clock, 50)
    assert sum(1 for _ in range(100) if b.try_acquire()) == 50


def test_a_higher_server_limit_is_learned_and_used(clock: Clock) -> None:
    server = Server(clock, limit=120)
    assert serve(budget(clock, 50), server) == 120 - 3  # all but the safety margin
    assert server.refused == 0


def test_another_client_on_the_key_stops_us_at_the_margin(clock: Clock) -> None:
    server = Server(clock, others=39)  # someone else spent 39 of 60 this minute
    assert serve(budget(clock, 50), server) == 60 - 39 - 3
    assert server.refused == 0


def test_a_late_answer_never_overwrites_a_newer_reading(clock: Clock) -> None:
    b = budget(clock, 50)
    early, late = b.try_acquire(), b.try_acquire()
    b.observe(late, 10)
    b.observe(early, 55)  # answered last, but sent first: older news
    assert b.state()["remaining"] == "10"


def test_no_more_than_the_margin_is_out_unanswered(clock: Clock) -> None:
    b = budget(clock, 50)
    first = b.try_acquire()
    b.observe(first, 50)
    out = [b.try_acquire() for _ in range(10)]
    assert sum(1 for t in out if t) == 3  # then it waits for their answers


def test_the_others_use_is_left_to_them_until_their_minute_passes(clock: Clock) -> None:
    server = Server(clock, others=50)
    b = budget(clock, 50)
    assert serve(b, server) == 60 - 50 - 3
    clock.now += 3
    assert b.try_acquire() == 0  # the last reading still says what is theirs
    clock.now += 61  # their minute has passed: room again
    assert serve(b, server) > 40
    assert server.refused == 0


def test_a_429_holds_every_process_until_retry_after(clock: Clock) -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    one = RateBudget(client, "t:rate", per_minute=50, clock=clock, max_wait_s=0)
    two = RateBudget(client, "t:rate", per_minute=50, clock=clock, max_wait_s=0)
    one.hold(24)
    assert two.try_acquire() == 0
    with pytest.raises(TemporaryError):
        two.acquire()
    clock.now += 25
    assert two.try_acquire() > 0


def test_lower_priorities_leave_a_larger_reserve(clock: Clock) -> None:
    server = Server(clock, others=29)
    b = budget(clock, 60)  # margin 3
    comments = serve(b.at(Priority.COMMENT), server)
    statuses = serve(b.at(Priority.STATUS), server)  # still some room after the comments
    triggers = serve(b.at(Priority.TRIGGER), server)  # and after the statuses
    assert comments > 0 and statuses > 0 and triggers > 0
    assert 60 - 29 - (comments + statuses + triggers) >= 3  # the margin is kept
    assert server.refused == 0
