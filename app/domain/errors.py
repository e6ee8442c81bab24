"""The error hierarchy: everything planeflow raises on purpose is a PlaneflowError."""

from __future__ import annotations


class PlaneflowError(Exception):
    """Base of every error planeflow raises on purpose."""


class ConfigError(PlaneflowError):
    """Settings or the project registry are invalid; the message names file and field."""


class IllegalTransition(PlaneflowError):
    """The stage machine was asked for a move its table does not allow."""

    def __init__(self, stage: str, outcome: str, reason: str = "") -> None:
        self.stage = stage
        self.outcome = outcome
        msg = f"illegal transition: stage {stage!r} has no move for outcome {outcome!r}"
        super().__init__(f"{msg} ({reason})" if reason else msg)


class StoreError(PlaneflowError):
    """A Redis store operation could not complete (e.g. lock not acquired in time)."""


class PlaneError(PlaneflowError):
    """A Plane API call failed after its retries."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        *,
        retryable: bool | None = None,
        body: str = "",
    ) -> None:
        self.status = status
        self.body = body  # the answer's text (a 409 names the existing resource)
        # A 4xx other than 408/429 (or a request that cannot be made) fails the same way
        # every time: not worth a retry.
        self.retryable = (
            retryable
            if retryable is not None
            else status is None or status >= 500 or status in (408, 429)
        )
        super().__init__(message)


class TemporaryError(PlaneflowError):
    """A failure worth retrying later (network, 5xx, rate limit)."""
