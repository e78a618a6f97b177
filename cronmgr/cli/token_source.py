"""Where the command's API token comes from, and where it was looked for when none was found.

The client looks in three places, first found wins: `--token`, the configured token
(`CRONMGR_API_TOKEN`, or `api_token` in the config file), and the token file the local
controller writes into its state directory (`<home>/var/api-token` unless
`CRONMGR_STATE_DIR` moves it; only read for a controller on this machine). A 401 then
says which one was sent, or that none was found and where the command looked.
"""

from __future__ import annotations

import argparse
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager

from cronmgr.core.config import Settings
from cronmgr.core.errors import Unauthorized
from cronmgr.core.locate import is_loopback, read_token


def _local(args: argparse.Namespace) -> bool:
    # As the client decides: the token file is only ever sent to this machine's controller.
    return args.url is None or is_loopback(urllib.parse.urlsplit(args.url).hostname or "")


def token_source(args: argparse.Namespace, settings: Settings) -> str | None:
    """Where the token the command sends comes from; None when it sends none."""
    if args.token:
        return "--token"
    if settings.api_token:
        return "CRONMGR_API_TOKEN or api_token in the config file"
    if _local(args) and read_token(settings):
        return f"the token file {settings.token_file}"
    return None


def where_looked(args: argparse.Namespace, settings: Settings) -> str:
    """The places searched for a token, each with what was found there (nothing)."""
    if not _local(args):
        token_file = "the token file is only read for a controller on this machine"
    else:
        moved = "CRONMGR_STATE_DIR" if settings.state_dir else f"home {settings.home}"
        token_file = f"no token file at {settings.token_file} ({moved})"
    return (
        "no API token was found: no --token, no CRONMGR_API_TOKEN (nor api_token in the "
        f"config file), and {token_file}; pass --token, set CRONMGR_API_TOKEN, or point "
        "CRONMGR_HOME (or --home) at the controller's home"
    )


@contextmanager
def explained_401(args: argparse.Namespace, settings: Settings) -> Iterator[None]:
    """Turn a 401 into one sentence that says which token was sent, or where none was found."""
    try:
        yield
    except Unauthorized as exc:
        source = token_source(args, settings)
        if source is None:
            detail = f"the controller wants a token; {where_looked(args, settings)}"
            raise Unauthorized(detail) from None
        raise Unauthorized(f"{exc.detail} (the token sent came from {source})") from None
