"""The budget follows what Plane says is left for the key (fake Redis, a fake clock)."""

from __future__ import annotations

import fakeredis
import pytest

from app.domain.errors import TemporaryError
from app.plane.ratelimit import Priority, RateBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def budget(clock: Clock, per_minute: int = 50, **kw: object) -> RateBudget:
    client = fakeredis.FakeRedis(decode_responses=True)
    return RateBudget(client, "t:rate", per_minute=per_minute, clock=clock, **kw)  # type: ignore[arg-type]


def grants(b: RateBudget, tries: int = 500) -> list[int]:
    out = []
    for _ in range(tries):
        ticket = b.try_acquire()
        if not ticket:
            break
        out.append(ticket)
    return out


def test_without_a_reading_the_configured_limit_holds(clock: Clock) -> None:
    assert len(grants(budget(clock, 50))) == 50


def test_a_higher_server_limit_is_learned_and_used(clock: Clock) -> None:
    b = budget(clock, 50)  # margin 3
    first = b.try_acquire()
    b.observe(first, 119)  # the server allows 120 a minute: 119 left after our one
    more = grants(b)
    assert len(more) == 120 - 3 - 1  # all but the safety margin


def test_another_client_on_the_key_stops_us_at_the_margin(clock: Clock) -> None:
    b = budget(clock, 50)
    first = b.try_acquire()
    b.observe(first, 20)  # someone else spent 39 of 60 this minute
    assert len(grants(b)) == 20 - 3  # left for them: the margin


def test_a_late_answer_never_overwrites_a_newer_reading(clock: Clock) -> None:
    b = budget(clock, 50)
    early, late = b.try_acquire(), b.try_acquire()
    b.observe(late, 10)
    b.observe(early, 55)  # answered last, but sent first: older news
    assert b.state()["remaining"] == "10"
    assert len(grants(b)) == 10 - 3


def test_our_requests_leaving_the_window_give_room_again(clock: Clock) -> None:
    b = budget(clock, 50)
    tickets = grants(b, 10)
    b.observe(tickets[-1], 3)  # at the margin: nothing more now
    assert b.try_acquire() == 0
    clock.now += 61  # our ten left the server's window (the reading is too old, too)
    assert len(grants(b)) == 50
    clock.now += 61
    t = b.try_acquire()
    b.observe(t, 3)
    clock.now += 30
    assert b.try_acquire() == 0  # still inside the window: the reading stands


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
    b = budget(clock, 60)  # margin 3
    t = b.try_acquire()
    b.observe(t, 30)
    comments = grants(b.at(Priority.COMMENT))  # stops at margin + 30 % of 60 = 21 left
    statuses = grants(b.at(Priority.STATUS))  # stops at 3 + 9 = 12 left
    triggers = grants(b.at(Priority.TRIGGER))  # stops at the margin: 3 left
    assert (len(comments), len(statuses), len(triggers)) == (9, 9, 9)
