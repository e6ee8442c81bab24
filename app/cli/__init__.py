"""The `planeflow` command: process entry points and operator tools."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any, NoReturn

import redis

from app import logs
from app.cli import init_cmd, launchers, operate, setup_cmds, views
from app.cli.formatting import redacted_url
from app.cli.launchers import ListenError, new_event_loop
from app.config import Settings, load_settings
from app.domain.errors import PlaneError, PlaneflowError

__all__ = ["build_parser", "main", "new_event_loop"]


# Exit codes (README "Operator errors").
EXIT_ERROR = 1  # a planeflow error: settings, registry, an input it refuses
EXIT_USAGE = 2  # the command line
EXIT_REDIS = 3  # Redis unreachable
EXIT_PLANE = 4  # Plane unreachable or refusing
EXIT_LISTEN = 5  # cannot listen: address in use, unknown host
EXIT_INTERRUPTED = 130
EXIT_PIPE = 141  # the output was closed (`| head`): nothing more is printed
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Parser(argparse.ArgumentParser):
    """Usage errors are one line too."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def version() -> str:
    try:
        return metadata.version("planeflow")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="planeflow", description=__doc__)
    parser.add_argument("--version", action="version", version=f"planeflow {version()}")
    parser.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS)
    parser.add_argument("--debug", action="store_true", help="tracebacks for unexpected errors")
    sub: Any = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    launchers.add_parsers(sub)
    views.add_parsers(sub)
    operate.add_parsers(sub)
    setup_cmds.add_parsers(sub)
    init_cmd.add_parser(sub)
    return parser


def fail(message: str, code: int) -> int:
    print(f"planeflow: error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.log_level)
    settings = Settings.model_construct(redis_url="")
    try:
        settings = load_settings()
        logs.setup(args.log_level, settings.log_format)
        result: int = args.func(args, settings)
        return result
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error
        return EXIT_PIPE
    except ListenError as exc:
        return fail(str(exc), EXIT_LISTEN)
    except PlaneError as exc:
        return fail(f"Plane: {exc}", EXIT_PLANE)
    except PlaneflowError as exc:
        return fail(str(exc), EXIT_ERROR)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        where = redacted_url(settings.redis_url)
        return fail(f"Redis unreachable at {where}: {exc} (set ORCH_REDIS_URL)", EXIT_REDIS)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            raise
        return fail(
            f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            EXIT_ERROR,
        )
