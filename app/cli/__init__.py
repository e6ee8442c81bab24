"""The `planeflow` command: process entry points and operator tools."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import redis

from app import logs
from app.cli import launchers, setup_cmds, views
from app.cli.formatting import redacted_url
from app.cli.launchers import new_event_loop
from app.config import Settings, load_settings
from app.domain.errors import PlaneflowError

__all__ = ["build_parser", "main", "new_event_loop"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="planeflow", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    launchers.add_parsers(sub)
    views.add_parsers(sub)
    setup_cmds.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.log_level)
    settings = Settings.model_construct(redis_url="")
    try:
        settings = load_settings()
        result: int = args.func(args, settings)
        return result
    except PlaneflowError as exc:
        print(f"planeflow: error: {exc}", file=sys.stderr)
        return 1
    except redis.ConnectionError as exc:
        print(
            f"planeflow: error: Redis unreachable at "
            f"{redacted_url(settings.redis_url)}: {exc} (set ORCH_REDIS_URL)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130
