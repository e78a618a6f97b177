"""Fixtures for the whole suite live in support.py and stores.py (the store of each backend);
this file registers them, and runs the HTTP client tests on both event loops."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Mapping

import pytest
import uvloop
from stores import pg_database, pg_url, store, store_url
from support import controller, controller_factory, http

__all__ = [
    "controller",
    "controller_factory",
    "http",
    "pg_database",
    "pg_url",
    "store",
    "store_url",
]


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C as a terminal sends it, for the commands the tests start: a suite started in
    the background of a shell inherits SIGINT ignored, which its children would keep, and
    the tests that end a `logs -f` with SIGINT would wait on it forever."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


BOTH_LOOPS = frozenset({"test_http_wire.py", "test_http_runner.py"})
"""Test files run on asyncio's loop and on uvloop, which the daemon runs on: the lean HTTP
client meets uvloop's own transports there."""


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Both loops for the HTTP client tests, the default loop for everything else."""
    if item.path.name in BOTH_LOOPS:
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}
