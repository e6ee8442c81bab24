"""The reconciler's per-project state in Redis (`pf:reconcile:<project>`), typed.

The reconciler, the scheduler's fan-out, the CLI's `status` view and the tests read and
write it only through here; the hash's field names are this module's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.keys import Keys


@dataclass(frozen=True)
class ReconcileState:
    watermark: datetime | None = None  # where the next incremental scan starts (minus margin)
    passes: int = 0
    next_due: float = 0.0  # epoch seconds
    webhooks_silent: bool = False  # replays but no webhook for a while
    last_pass_at: str = ""
    last_api_calls: int | None = None
    last_replayed: int = 0
    last_replay_at: str = ""
    last_error: str = ""
    rolling_cursor: str = ""  # the rolling scan's next page ("" = from the start)
    rolling_since: str = ""  # when the rolling scan's current round began (ISO)
    covered_in_s: float | None = None  # how long the last whole round took
    round_pages: int = 0  # pages read in the current round so far
    last_round_pages: int = 0  # pages a whole round took last time (0: not known yet)
    rolling_next_at: float = 0.0  # epoch seconds: the next page is due then
    calls_avg: float | None = None  # API calls per pass, smoothed (for the budget share)

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> ReconcileState:
        mark = data.get("watermark")
        calls = data.get("last_api_calls")
        return cls(
            watermark=datetime.fromisoformat(mark) if mark else None,
            passes=int(data.get("passes") or 0),
            next_due=float(data.get("next_due") or 0),
            webhooks_silent=data.get("webhooks_silent") == "1",
            last_pass_at=data.get("last_pass_at", ""),
            last_api_calls=int(calls) if calls not in (None, "") else None,
            last_replayed=int(data.get("last_replayed") or 0),
            last_replay_at=data.get("last_replay_at", ""),
            last_error=data.get("last_error", ""),
            rolling_cursor=data.get("rolling_cursor", ""),
            rolling_since=data.get("rolling_since", ""),
            covered_in_s=float(data["covered_in_s"]) if data.get("covered_in_s") else None,
            round_pages=int(data.get("round_pages") or 0),
            last_round_pages=int(data.get("last_round_pages") or 0),
            rolling_next_at=float(data.get("rolling_next_at") or 0),
            calls_avg=float(data["calls_avg"]) if data.get("calls_avg") else None,
        )


class ReconcileStateStore:
    def __init__(self, client: Any, keys: Keys) -> None:
        self.r = client
        self.keys = keys

    def get(self, project: str) -> ReconcileState:
        return ReconcileState.from_hash(self.r.hgetall(self.keys.reconcile_state(project)))

    def _set(self, project: str, **fields: Any) -> None:
        self.r.hset(self.keys.reconcile_state(project), mapping=fields)

    def schedule(self, project: str, at: float) -> None:
        self._set(project, next_due=at)

    def not_before(self, project: str, at: float) -> None:
        """Delay the next pass to `at` at least (never brings it forward)."""
        if self.get(project).next_due < at:
            self.schedule(project, at)

    def advance(self, project: str, watermark: datetime, passes: int) -> None:
        self._set(project, watermark=watermark.isoformat(), passes=passes)

    def roll(self, project: str, cursor: str | None, at: datetime, cover_s: float) -> None:
        """The rolling scan read a page: `cursor` is the next one (None: the round is
        complete, the next pass starts the next round). The next page is due so that a
        round takes about `cover_s` (at once while the round's length is not known)."""
        state = self.get(project)
        since = state.rolling_since or at.isoformat()
        pages = state.round_pages + 1
        known = pages if cursor is None else state.last_round_pages
        next_at = at.timestamp() + (cover_s / known if known else 0.0)
        if cursor is None:
            took = (at - datetime.fromisoformat(since)).total_seconds()
            self._set(
                project,
                rolling_cursor="",
                rolling_since="",
                covered_in_s=took,
                round_pages=0,
                last_round_pages=pages,
                rolling_next_at=next_at,
            )
        else:
            self._set(
                project,
                rolling_cursor=cursor,
                rolling_since=since,
                round_pages=pages,
                rolling_next_at=next_at,
            )

    def note_replay(self, project: str, at: datetime) -> None:
        self._set(project, last_replay_at=at.isoformat())

    def record_pass(
        self, project: str, at: datetime, api_calls: int, replayed: int, error: str | None
    ) -> None:
        before = self.get(project).calls_avg
        average = api_calls if before is None else 0.7 * before + 0.3 * api_calls
        self._set(
            project,
            last_pass_at=at.isoformat(),
            last_api_calls=api_calls,
            calls_avg=round(average, 3),
            last_replayed=replayed,
            last_error=error or "",
        )

    def mark_silent(self, project: str, silent: bool) -> None:
        self._set(project, webhooks_silent="1" if silent else "0")

    def pass_lock(self, project: str, ttl_s: float) -> Any:
        """The lock that keeps one pass per project at a time (redis-py Lock)."""
        return self.r.lock(self.keys.reconcile_lock(project), timeout=ttl_s, thread_local=False)

    def last_webhooks(self) -> dict[str, str]:
        """Project -> ISO time of its last webhook (written by the receiver)."""
        return dict(self.r.hgetall(self.keys.webhooks_last))
