"""Another client spending on planeflow's API key: planeflow keeps clear of 429s.

Time is compressed 10 times (a 6 s window stands for Plane's minute): the sandbox
allows 60 requests a window per key, another client spends 30 a window on the same key,
and two planeflow threads ask for as much as they can for five windows. (The real-time
ten minutes: `python -m bench.budget_share`.)
"""

from __future__ import annotations

import redis

from app.sandbox.plane_runner import SandboxPlaneRunner
from bench.budget_share import scenario

WINDOW_S = 6.0
WINDOWS = 5


def test_a_second_client_on_the_key_causes_at_most_two_429s(
    real_redis: redis.Redis, sandbox_plane: SandboxPlaneRunner
) -> None:
    got = scenario(sandbox_plane, real_redis, window_s=WINDOW_S, windows=WINDOWS, other=30)
    assert got["planeflow_429"] <= 2, got
    # what the key had left was used: about 30 a window less the safety margin
    assert got["planeflow_calls"] >= WINDOWS * 20, got
