"""The commands that talk to a running controller through the blocking `Client`: start,
restart, stop, reload, status, nodes, logs (with its filters and --follow) and clear-logs."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from cronmgr.cli.output import EXIT_OK, format_nodes, format_status
from cronmgr.cli.token_source import explained_401
from cronmgr.core.config import Settings

if TYPE_CHECKING:
    from cronmgr.client import Client


@contextlib.contextmanager
def _client(args: argparse.Namespace, settings: Settings) -> Iterator[Client]:
    # A 401 says which token was sent, or where the command looked for one.
    from cronmgr.client import Client

    with (
        explained_401(args, settings),
        Client(args.url, token=args.token, settings=settings) as client,
    ):
        yield client


def cmd_start(args: argparse.Namespace, settings: Settings) -> int:
    """Start the daemon."""
    with _client(args, settings) as client:
        _say(client.start(args.interval, args.pipeline))
    return EXIT_OK


def cmd_restart(args: argparse.Namespace, settings: Settings) -> int:
    """Stop, then start the daemon."""
    with _client(args, settings) as client:
        _say(client.restart(args.interval, args.pipeline))
    return EXIT_OK


def cmd_stop(args: argparse.Namespace, settings: Settings) -> int:
    """Stop the daemon."""
    with _client(args, settings) as client:
        _say(client.stop())
    return EXIT_OK


def cmd_reload(args: argparse.Namespace, settings: Settings) -> int:
    """Signal the daemon to reload."""
    with _client(args, settings) as client:
        _say(client.reload())
    return EXIT_OK


def cmd_clear_logs(args: argparse.Namespace, settings: Settings) -> int:
    """Empty the daemon's log."""
    with _client(args, settings) as client:
        _say(client.clear_logs())
    return EXIT_OK


def _say(reply: Mapping[str, Any]) -> None:
    print(reply.get("message", "done"))
    warn(reply)


def warn(reply: Mapping[str, Any]) -> None:
    """Print the answer's `warnings` to stderr, one `cronmgr: warning: ...` line each."""
    for text in reply.get("warnings") or ():
        print(f"cronmgr: warning: {text}", file=sys.stderr)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Print the daemon's status, for people or (--json) for programs."""
    with _client(args, settings) as client:
        status = client.status()
    if args.json:
        print(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_status(status))
    return EXIT_OK


def cmd_nodes(args: argparse.Namespace, settings: Settings) -> int:
    """Print the nodes of the store as a table, or (--json) as the API answers them."""
    with _client(args, settings) as client:
        nodes = client.nodes()
    if args.json:
        print(orjson.dumps(nodes, option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_nodes(nodes))
    return EXIT_OK


def cmd_logs(args: argparse.Namespace, settings: Settings) -> int:
    """Print the last log lines (that pass the filters); with --follow, keep printing new ones.

    On a terminal (or with --color always) each line is rendered for people; with --json,
    or when the output goes to a pipe or a file, the JSON lines are printed as they are.
    """
    filters = _log_filters(args)
    show = _line_printer(args)
    with _client(args, settings) as client:
        if args.follow:
            return _follow(client, args.lines, filters, show)
        if filters:
            lines = client.log_page(lines=args.lines, **filters)["lines"]
        else:
            text = client.tail_logs(args.lines)
            if show is None:  # JSON lines: the text exactly as the controller sent it
                sys.stdout.write(text)
                return EXIT_OK
            lines = text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
        for line in lines:
            print(line if show is None else show(line))
    return EXIT_OK


def _line_printer(args: argparse.Namespace) -> Callable[[str], str] | None:
    """How a line is rendered for people, or None to print the JSON lines unchanged."""
    from cronmgr.cli.log_lines import LineRenderer, use_colour

    if args.json or not (sys.stdout.isatty() or args.color == "always"):
        return None
    return LineRenderer(colour=use_colour(args.color, sys.stdout)).render


def _log_filters(args: argparse.Namespace) -> dict[str, Any]:
    """The filters given on the command line, as the client's keyword arguments."""
    given = {
        "level": args.level,
        "run_id": args.run,
        "schedule_id": args.schedule,
        "event": args.event,
        "since": args.since,
    }
    return {name: value for name, value in given.items() if value is not None}


def _follow(
    client: Client, lines: int, filters: Mapping[str, Any], show: Callable[[str], str] | None
) -> int:
    # Ctrl-C is how a follow ends, so it ends well.
    with contextlib.suppress(KeyboardInterrupt):
        for line in client.follow_logs(lines, **filters):
            print(line if show is None else show(line), flush=True)
    return EXIT_OK
