"""Definition changes from any process, as PostgreSQL announces them (LISTEN/NOTIFY).

Every write that takes a new revision (a target or schedule created, edited, paused or
deleted, by any controller on any host) notifies the channel `cronmgr_changes` when it
commits (a trigger of postgres.sql). `ChangeListener` keeps one connection listening on
it and calls back on every notice; when that connection is lost it connects again with a
growing pause, and calls back once it is back, since notices sent meanwhile are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg
import structlog

from cronmgr.core.supervision import report_death

log = structlog.get_logger("cronmgr.store")

CHANNEL = "cronmgr_changes"
RETRY_FIRST_SECONDS = 0.1
RETRY_MAX_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 5.0
PING_SECONDS = 10.0
"""How often a quiet listening connection is checked."""


class ChangeListener:
    """Calls `changed()` for every change notice of the store at `url`, until closed."""

    def __init__(self, url: str, changed: Callable[[], None]) -> None:
        self._url = url
        self._changed = changed
        self._connection: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen now (raises what connecting raised), and keep listening after."""
        await self._listen()
        self._task = asyncio.create_task(self._keep_listening(), name="store change listener")
        self._task.add_done_callback(report_death)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()

    async def _listen(self) -> None:
        self._lost.clear()
        connection = await asyncpg.connect(self._url, timeout=CONNECT_TIMEOUT_SECONDS)
        connection.add_termination_listener(lambda _: self._lost.set())
        await connection.add_listener(CHANNEL, self._notice)
        self._connection = connection

    def _notice(self, *_: object) -> None:
        self._changed()

    async def _keep_listening(self) -> None:
        while True:
            await self._until_lost()
            log.warning("store_listener_lost", channel=CHANNEL)
            await self._reconnect()
            log.info("store_listener_resumed", channel=CHANNEL)
            self._changed()  # notices sent while it was away are lost: look once

    async def _until_lost(self) -> None:
        """Return once the connection is gone: closed, or silent (a cut that sent no
        reset leaves a socket that looks open; a ping finds it out)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), PING_SECONDS)
                return
            assert self._connection is not None
            try:
                await self._connection.fetchval("SELECT 1", timeout=CONNECT_TIMEOUT_SECONDS)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                self._connection.terminate()
                return

    async def _reconnect(self) -> None:
        pause = RETRY_FIRST_SECONDS
        while True:
            try:
                await self._listen()
                return
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await asyncio.sleep(pause)
                pause = min(pause * 2, RETRY_MAX_SECONDS)
