"""The shared Plane request budget of one API key: one Redis state for every process.

Plane allows a number of requests per minute per API key (`API_KEY_RATE_LIMIT`, 60 by
default) in a sliding window, answers 429 with `Retry-After` past it, and tells on
every successful answer how many requests the key has left (`X-RateLimit-Remaining`).
The budget follows both:

- **our window**: a 60-second sliding window of our own requests (a sorted set), up to
  the limit — `ORCH_PLANE_RATE_PER_MIN` (50), or more once the server has shown a higher
  one (remaining + our requests in the window, less the safety margin);
- **the server's view**: the remaining count of the newest answer, less our requests
  sent after that answer's request. A request is sent only while that stays above the
  safety margin, so another client spending on the same key rarely causes a 429; at the
  margin, one probe every twentieth of the window reads the server again. No more than
  `margin` requests are ever out before their answers are read (no blind burst);
- **a 429** holds every process until its `Retry-After` has passed.

Priorities share the budget: a lower priority stops earlier (its share of the limit,
and a larger reserve of the server's remaining), so under congestion reads for human
triggers go first, then status writes, then comments, and the stages a task has already
passed are shown only while half the budget is free (`RateBudget.at`).

Each grant is a *ticket* (a sequence number); the client reports the answer with its
ticket (`observe`), so an answer that arrives late never overwrites a newer reading.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable
from enum import Enum

import redis

from app.domain.errors import TemporaryError

WINDOW_S = 60.0
LEARNED_FOR_S = 600.0  # a limit the server showed counts this long

# KEYS: our window (zset of request times), the state hash.
# ARGV: now, share, margin, configured limit, seconds a learned limit counts, window.
# Returns {ticket, 0} when granted, {0, seconds to wait} otherwise.
_ACQUIRE = """
local now, share = tonumber(ARGV[1]), tonumber(ARGV[2])
local margin, configured = tonumber(ARGV[3]), tonumber(ARGV[4])
local learned_for, window = tonumber(ARGV[5]), tonumber(ARGV[6])
local st = redis.call('HMGET', KEYS[2], 'hold_until', 'limit', 'limit_at', 'remaining',
                      'at', 'obs', 'acq', 'win_at_obs', 'probe_at')
local hold = tonumber(st[1] or '0') or 0
if hold > now then return {0, tostring(hold - now)} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local limit = configured
local learned, learned_at = tonumber(st[2] or ''), tonumber(st[3] or '0') or 0
if learned and now - learned_at < learned_for then
  limit = math.max(limit, learned - margin)
end
-- what the key had for us at the last reading (its limit less the others' requests in
-- the window): another client's steady use is left to it
local seen_rem, seen_at = tonumber(st[4] or ''), tonumber(st[5] or '0') or 0
if seen_rem and now - seen_at < window then
  local ours_then = tonumber(st[8] or '0') or 0
  limit = math.max(1, math.min(limit, seen_rem + ours_then - margin))
end
local allowed = math.max(1, math.floor(limit * share))
if count >= allowed then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tostring(math.max(tonumber(oldest[2]) + window - now, 0.05))}
end
local acq = tonumber(st[7] or '0') or 0
local since = acq - (tonumber(st[6] or '0') or 0)
-- never more than `margin` requests out whose answer has not been read: no burst
-- outruns what the server says
if since >= math.max(margin, 1) and now - (tonumber(st[5] or '0') or 0) < 5 then
  return {0, '0.05'}
end
local rem, at = tonumber(st[4] or ''), tonumber(st[5] or '0') or 0
if rem and now - at < window then
  local left = rem - since
  local reserve = margin + math.floor(limit * (1 - share))
  if left <= reserve then
    -- at the margin: one probe now and then, to read the server again (slots free up
    -- as the window slides; another client may have taken them)
    local probe = window / 20
    local last = tonumber(st[9] or '0') or 0
    if not (left >= 1 and now - at >= probe and now - last >= probe) then
      return {0, tostring(math.max(math.min(at + probe, last + probe) - now, 0.05))}
    end
    redis.call('HSET', KEYS[2], 'probe_at', now)
  end
end
acq = acq + 1
redis.call('HSET', KEYS[2], 'acq', acq)
redis.call('ZADD', KEYS[1], now, tostring(now) .. ':' .. acq)
redis.call('EXPIRE', KEYS[1], math.ceil(window * 2))
return {acq, 0}
"""

# ARGV: now, ticket, remaining, seconds a learned limit counts, window. Keeps the reading of the
# newest request answered, and the highest limit it shows.
_OBSERVE = """
local now, ticket, rem = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local learned_for, window = tonumber(ARGV[4]), tonumber(ARGV[5])
local obs = tonumber(redis.call('HGET', KEYS[2], 'obs') or '0') or 0
if ticket <= obs then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local ours = redis.call('ZCARD', KEYS[1])
redis.call('HSET', KEYS[2], 'obs', ticket, 'remaining', rem, 'at', now, 'win_at_obs', ours)
local seen = rem + ours
local learned = tonumber(redis.call('HGET', KEYS[2], 'limit') or '')
local learned_at = tonumber(redis.call('HGET', KEYS[2], 'limit_at') or '0') or 0
if not learned or seen >= learned or now - learned_at >= learned_for then
  redis.call('HSET', KEYS[2], 'limit', seen, 'limit_at', now)
end
return 1
"""

# ARGV: until, window. A 429: every process waits until then.
_HOLD = """
local till = tonumber(ARGV[1])
local hold = tonumber(redis.call('HGET', KEYS[2], 'hold_until') or '0') or 0
if till > hold then redis.call('HSET', KEYS[2], 'hold_until', till) end
-- nothing is left until then; after it, one probe reads the server again (not a burst)
redis.call('HSET', KEYS[2], 'remaining', tonumber(ARGV[3]), 'at', till, 'obs',
           redis.call('HGET', KEYS[2], 'acq') or 0, 'win_at_obs', redis.call('ZCARD', KEYS[1]))
return 1
"""


class Priority(Enum):
    """Who is asking, and the share of the budget it may fill."""

    TRIGGER = 1.0  # reading a work item a human just moved
    STATUS = 0.85  # mirroring a task's stage to Plane
    COMMENT = 0.7  # the review and closing comments
    PASSING = 0.5  # a stage the task has already left, shown only on a quiet board

    @property
    def share(self) -> float:
        return float(self.value)


class RateBudget:
    def __init__(
        self,
        client: redis.Redis,
        key: str,
        *,
        per_minute: int,
        margin: int | None = None,
        max_wait_s: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        share: float = 1.0,
        window_s: float = WINDOW_S,
    ) -> None:
        self.per_minute = per_minute
        # Requests of the server's remaining left unspent: what another client on the
        # same key may spend between two of our answers.
        self.margin = margin if margin is not None else max(2, math.ceil(per_minute * 0.05))
        self.max_wait_s = max_wait_s
        self.share = share
        self.window_s = window_s  # Plane's is a minute; tests compress it
        self._client = client
        self._key = key
        self._sleep = sleep
        self._clock = clock
        self._keys = [f"{key}:window", f"{key}:state"]
        self._acquire = client.register_script(_ACQUIRE)
        self._observe = client.register_script(_OBSERVE)
        self._hold = client.register_script(_HOLD)

    @property
    def limit(self) -> int:
        """Requests per window this caller may fill (as configured; more once learned)."""
        return max(1, int(self.per_minute * self.share))

    def at(self, priority: Priority) -> RateBudget:
        """The same budget, for a caller of `priority` (it stops at its share)."""
        return RateBudget(
            self._client,
            self._key,
            per_minute=self.per_minute,
            margin=self.margin,
            max_wait_s=self.max_wait_s,
            sleep=self._sleep,
            clock=self._clock,
            share=priority.share,
            window_s=self.window_s,
        )

    def _try(self) -> tuple[int, float]:
        args = [
            self._clock(),
            self.share,
            self.margin,
            self.per_minute,
            LEARNED_FOR_S,
            self.window_s,
        ]
        ticket, wait = self._acquire(keys=self._keys, args=args)
        return int(ticket), float(wait)

    def try_acquire(self) -> int:
        """A ticket if a request may be sent now, else 0 (nothing taken)."""
        return self._try()[0]

    def acquire(self) -> int:
        """Block until a request may be sent; returns its ticket."""
        start = time.monotonic()
        while True:
            ticket, wait = self._try()
            if ticket:
                return ticket
            waited = time.monotonic() - start
            if waited >= self.max_wait_s:
                raise TemporaryError(
                    f"Plane request budget ({self.per_minute}/min) exhausted for {waited:.0f}s"
                )
            pause = min(max(wait, 0.05), 1.0) * (0.8 + 0.4 * random.random())
            self._sleep(min(pause, max(self.max_wait_s - waited, 0.01)))

    def observe(self, ticket: int, remaining: int) -> None:
        """The server's `X-RateLimit-Remaining` in the answer to the request of `ticket`."""
        args = [self._clock(), ticket, remaining, LEARNED_FOR_S, self.window_s]
        self._observe(keys=self._keys, args=args)

    def hold(self, seconds: float) -> None:
        """Plane answered 429: no process sends before `seconds` from now."""
        now = self._clock()
        # the reading after the hold: one request above the margin (one probe, no burst)
        probe = self.margin + 1
        self._hold(keys=self._keys, args=[now + max(seconds, 0.0), self.window_s, probe])

    def state(self) -> dict[str, str]:
        """The shared state (for `planeflow status` and the benches)."""
        raw = self._client.hgetall(self._keys[1])
        return {str(k): str(v) for k, v in raw.items()}


def key_digest(api_key: str) -> str:
    """A short, stable name for an API key (never the key itself in Redis or logs)."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]
