"""The commands that talk to a running controller through the blocking `Client`: start,
restart, stop, reload, status, nodes, logs (with its filters and --follow) and clear-logs."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Mapping
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
    """Print the last log lines (that pass the filters); with --follow, keep printing new ones."""
    filters = _log_filters(args)
    with _client(args, settings) as client:
        if args.follow:
            return _follow(client, args.lines, filters)
        if filters:
            page = client.log_page(lines=args.lines, **filters)
            sys.stdout.writelines(f"{line}\n" for line in page["lines"])
        else:
            sys.stdout.write(client.tail_logs(args.lines))
    return EXIT_OK


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


def _follow(client: Client, lines: int, filters: Mapping[str, Any]) -> int:
    # Ctrl-C is how a follow ends, so it ends well.
    with contextlib.suppress(KeyboardInterrupt):
        for line in client.follow_logs(lines, **filters):
            print(line, flush=True)
    return EXIT_OK
