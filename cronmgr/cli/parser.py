"""The command line: `build_parser()` and its parts, the connection options accepted
before or after the command, each subcommand's arguments, and the argument types that
check a value as it is parsed (`--interval`, `--lines`, `--since`)."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cronmgr.cli.api_commands import (
    cmd_clear_logs,
    cmd_logs,
    cmd_nodes,
    cmd_reload,
    cmd_restart,
    cmd_start,
    cmd_status,
    cmd_stop,
)
from cronmgr.cli.local import FIRE_TIMES_SHOWN, cmd_run, cmd_validate
from cronmgr.cli.serve import cmd_daemon, cmd_serve
from cronmgr.core.config import Settings
from cronmgr.core.specs.queries import MIN_INTERVAL_SECONDS
from cronmgr.core.version import __version__

Command = Callable[[argparse.Namespace, Settings], int]


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(
        prog="cronmgr", description="Pipeline daemon controller: serve the API and drive it."
    )
    parser.add_argument("--version", action="version", version=f"cronmgr {__version__}")
    parser.add_argument("--config", type=Path, help="TOML config file (env CRONMGR_CONFIG)")
    parser.add_argument("--home", type=Path, help="base directory (env CRONMGR_HOME)")
    _add_connection_options(parser, default=None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the controller (REST API) in the foreground")
    serve.add_argument("--host", help="listen address (env CRONMGR_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (env CRONMGR_PORT, default 8000)")
    serve.set_defaults(func=cmd_serve)

    daemon = sub.add_parser("daemon", help=argparse.SUPPRESS)
    daemon.add_argument("--ready-fd", type=int)
    daemon.add_argument("--interval", type=int, required=True)
    daemon.add_argument("--pipeline")  # none: the schedules only
    daemon.set_defaults(func=cmd_daemon)

    _add_client_commands(sub)
    _add_validate(sub)
    _add_run(sub)
    _hide_suppressed(sub)
    return parser


def _hide_suppressed(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # argparse lists a subcommand added with help=SUPPRESS as "==SUPPRESS==" instead of
    # hiding it; drop it from the listing (it still parses).
    sub._choices_actions = [a for a in sub._choices_actions if a.help != argparse.SUPPRESS]


def _add_connection_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--url",
        default=default,
        help="controller URL (default: http://HOST:PORT from the settings, "
        "http://127.0.0.1:8000 unless configured)",
    )
    parser.add_argument(
        "--token",
        default=default,
        help="API token (default: CRONMGR_API_TOKEN, else the api-token file in the "
        "state directory)",
    )


def _connection_parent() -> argparse.ArgumentParser:
    # Accept --url/--token after the command too. SUPPRESS keeps a value given before the
    # command from being overwritten by the subcommand's default.
    parent = argparse.ArgumentParser(add_help=False)
    _add_connection_options(parent, default=argparse.SUPPRESS)
    return parent


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    func: Command,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        name, help=summary, description=summary[:1].upper() + summary[1:] + ".", **kwargs
    )
    parser.set_defaults(func=func)
    return parser


def _add_client_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add = functools.partial(_command, sub, parents=[_connection_parent()])
    start = add("start", "start the daemon through the controller", cmd_start)
    _add_launch_options(start, restart=False)
    restart = add(
        "restart", "stop the daemon, then start it (last settings unless given)", cmd_restart
    )
    _add_launch_options(restart, restart=True)
    add("stop", "stop the daemon (fine when it is not running)", cmd_stop)
    add("reload", "make the daemon re-read its pipeline and reopen its log file", cmd_reload)
    status = add("status", "show whether the daemon runs, and how", cmd_status)
    status.add_argument("--json", action="store_true", help="print the raw status as JSON")
    nodes = add("nodes", "list the daemons (nodes) of the store and their leases", cmd_nodes)
    nodes.add_argument("--json", action="store_true", help="print the nodes as the API sends them")
    logs = add("logs", "print the daemon's last log lines", cmd_logs)
    logs.add_argument(
        "-n",
        "--lines",
        type=_positive_int,
        default=50,
        metavar="N",
        help="how many lines from the end (default 50)",
    )
    logs.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C"
    )
    logs.add_argument(
        "--json",
        action="store_true",
        help="print the JSON lines as the daemon wrote them (the default when the output "
        "is not a terminal)",
    )
    logs.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the lines for people: auto (on a terminal, unless NO_COLOR is set), "
        "always (also through a pipe, e.g. into less -R), never",
    )
    _add_log_filters(logs)
    add("clear-logs", "empty the daemon's log file", cmd_clear_logs)


def _add_log_filters(parser: argparse.ArgumentParser) -> None:
    filters = parser.add_argument_group("filters (the lines must pass all that are given)")
    filters.add_argument(
        "--level",
        choices=("debug", "info", "warning", "error", "critical"),
        type=str.lower,
        help="only this level or a more severe one",
    )
    filters.add_argument("--run", metavar="RUN_ID", help="only the lines of this run")
    filters.add_argument(
        "--schedule", metavar="SCHEDULE_ID", help="only the lines of this schedule"
    )
    filters.add_argument(
        "--event",
        action="append",
        metavar="NAME",
        help="only this event (repeat for several)",
    )
    filters.add_argument(
        "--since",
        type=_since,
        metavar="WHEN",
        help="only lines from then on: an ISO 8601 time (no offset: UTC), or an age "
        "such as 90s, 15m, 2h, 1d",
    )


_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _since(value: str) -> str:
    """`--since`: an age (`15m`) becomes the time that long ago; a time is checked."""
    number, unit = value[:-1], value[-1:].lower()
    if unit in _AGE_UNITS and number.replace(".", "", 1).isdigit():
        ago = timedelta(seconds=float(number) * _AGE_UNITS[unit])
        return (datetime.now(UTC) - ago).isoformat()
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither an ISO 8601 time nor an age like 15m"
        ) from None
    return value


def _add_launch_options(parser: argparse.ArgumentParser, *, restart: bool) -> None:
    last = "default: as last started"
    interval_default = last if restart else "default 120 unless configured"
    pipeline_default = last if restart else "default: 'default' unless configured"
    parser.add_argument(
        "--interval",
        type=_interval,
        metavar="N",
        help=f"run the pipeline every N seconds (at least {MIN_INTERVAL_SECONDS}; "
        f"{interval_default})",
    )
    parser.add_argument("--pipeline", metavar="NAME", help=f"pipeline to run ({pipeline_default})")


def _add_validate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    validate = _command(
        sub,
        "validate",
        "check the pipeline files locally (no controller needed) and list their steps",
        cmd_validate,
        epilog="Exits 1 when any pipeline file is invalid.",
    )
    validate.add_argument(
        "--interval",
        type=_interval,
        metavar="N",
        help=f"also show the next {FIRE_TIMES_SHOWN} run times of an every-N-seconds schedule",
    )
    validate.add_argument(
        "--cron",
        metavar="EXPR",
        help="also check a cron expression (5 fields, or 6 with seconds first) and show "
        f"its next {FIRE_TIMES_SHOWN} fire times",
    )
    validate.add_argument(
        "--timezone", metavar="TZ", default="UTC", help="IANA timezone for --cron (default UTC)"
    )


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = _command(
        sub,
        "run",
        "run a pipeline once, now, in the foreground",
        cmd_run,
        epilog="Runs in this process: no controller or daemon is needed, and the run is "
        "not recorded in the store. Prints each step's outcome as it finishes; the log "
        "events (step output included) go to stderr as JSON lines. Steps see the "
        "environment the daemon would give them. Target steps fail: looking a target up "
        "needs the store. Exits 0 when the run succeeded, 1 when it failed, 2 for an "
        "unknown or invalid pipeline.",
    )
    run.add_argument("pipeline", metavar="PIPELINE", help="name of the pipeline to run")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _interval(text: str) -> int:
    value = _positive_int(text)
    if value < MIN_INTERVAL_SECONDS:
        raise argparse.ArgumentTypeError(
            f"must be at least {MIN_INTERVAL_SECONDS} seconds, not {value}"
        )
    return value
