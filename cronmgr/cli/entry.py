"""The entry point: `main()` parses the command line, loads the settings, runs the command
and turns the expected failures into a `cronmgr: ...` message and an exit code."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from cronmgr.cli.output import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    _fail,
)
from cronmgr.cli.parser import build_parser
from cronmgr.core.config import Settings, load_settings
from cronmgr.core.errors import ConfigError, ControllerUnreachable, CronmgrError


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        "home": args.home,
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
    }
    return load_settings(args.config, **overrides)


def run(argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, run the command, turn expected failures into a message and exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
        code: int = args.func(args, settings)
    except ConfigError as exc:
        return _fail(exc.detail, EXIT_USAGE)
    except ControllerUnreachable as exc:
        return _fail(exc.detail, EXIT_UNREACHABLE)
    except CronmgrError as exc:
        return _fail(exc.detail, EXIT_FAILED)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _reader_gone()
    return code


def _reader_gone() -> int:
    # `cronmgr logs | head`: the reader left. Point stdout at /dev/null so that flushing
    # it at exit does not raise again, and end quietly.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `cronmgr` console script."""
    sys.exit(run(argv))
