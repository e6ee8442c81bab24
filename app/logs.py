"""Structured logging: every line about a task carries task_id, work_item and stage.

`bind(...)` sets those fields in contextvars for the current handler/job, so
`grep PF-12` over the logs tells the work item's story. Lines go to stdout, one per
event: key=value text, or JSON lines with `ORCH_LOG_FORMAT=json` (`format=json`), each
with `ts`, `level`, `logger`, `message`, the bound fields and, for an error, `exc`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

_FIELDS = ("task_id", "work_item", "stage", "project")
_ctx: dict[str, contextvars.ContextVar[str | None]] = {
    name: contextvars.ContextVar(name, default=None) for name in _FIELDS
}
FORMATS = ("text", "json")


@contextmanager
def bind(**fields: str | None) -> Iterator[None]:
    """Attach task context to every log line emitted inside the block."""
    tokens = [(_ctx[k], _ctx[k].set(v)) for k, v in fields.items() if k in _ctx]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def bound() -> dict[str, str]:
    return {k: v for k, var in _ctx.items() if (v := var.get()) is not None}


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        fields = bound()
        record.pf_fields = fields
        text = " ".join(f"{k}={v}" for k, v in fields.items())
        record.pf_context = f" {text}" if text else ""
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "pf_fields", {}),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def setup(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once (idempotent; the level and format can change)."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_planeflow", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stdout)
        handler._planeflow = True  # type: ignore[attr-defined]
        handler.addFilter(_ContextFilter())
        root.addHandler(handler)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s%(pf_context)s: %(message)s")
    )
    root.setLevel(level)
    # One line per HTTP request is noise at INFO; failures are logged by our clients.
    for noisy in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _ReconnectsAreWarnings(logging.Filter):
    """Dramatiq logs a consumer's reconnect as CRITICAL; on the in-process fakeredis
    server (which drops a connection now and then) it is routine: a WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno == logging.CRITICAL
            and record.name.startswith("dramatiq.worker.ConsumerThread")
            and "connection error" in record.getMessage()
        ):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def soften_consumer_reconnects() -> None:
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_planeflow", False):
            handler.addFilter(_ReconnectsAreWarnings())
