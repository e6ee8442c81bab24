"""Structured logging: every line about a task carries task_id, work_item and stage.

`bind(...)` sets those fields in contextvars for the current handler/job, so
`grep PF-12` over the logs tells the work item's story. Output is key=value text.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_FIELDS = ("task_id", "work_item", "stage", "project")
_ctx: dict[str, contextvars.ContextVar[str | None]] = {
    name: contextvars.ContextVar(name, default=None) for name in _FIELDS
}


@contextmanager
def bind(**fields: str | None) -> Iterator[None]:
    """Attach task context to every log line emitted inside the block."""
    tokens = [(_ctx[k], _ctx[k].set(v)) for k, v in fields.items() if k in _ctx]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        parts = [f"{k}={v.get()}" for k, v in _ctx.items() if v.get() is not None]
        record.pf_context = (" " + " ".join(parts)) if parts else ""
        return True


def setup(level: str = "INFO") -> None:
    """Configure the root logger once (idempotent)."""
    root = logging.getLogger()
    if any(getattr(h, "_planeflow", False) for h in root.handlers):
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler._planeflow = True  # type: ignore[attr-defined]
    handler.addFilter(_ContextFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s%(pf_context)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level)
    # One line per HTTP request is noise at INFO; failures are logged by our clients.
    for noisy in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
