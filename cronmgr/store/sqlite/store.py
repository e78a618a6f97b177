"""The embedded store: one SQLite file in WAL mode, driven through aiosqlite's thread.

`SQLiteStore` is the `Store` on that file: the operations every SQL backend shares
(store/relational: definitions, runs, stats, nodes) over this backend's own connection
(`connection`). Here it is opened, checked, upgraded and closed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import aiosqlite

from cronmgr.core.errors import StoreError
from cronmgr.store.relational.definitions import SchedulesMixin, TargetsMixin
from cronmgr.store.relational.nodes import NodesMixin
from cronmgr.store.relational.runs import RunsMixin
from cronmgr.store.relational.stats import MetricsMixin
from cronmgr.store.sqlite.connection import BUSY_TIMEOUT_MS, PRAGMAS, SQLiteConnection
from cronmgr.store.writer import SyncWriter

MIN_SQLITE = (3, 35)
CLOSE_HOLD_SECONDS = 10.0
"""How long a closing store goes on trying writes held for want of room."""


class SQLiteStore(
    TargetsMixin, SchedulesMixin, RunsMixin, MetricsMixin, NodesMixin, SQLiteConnection
):
    """The Store on one SQLite file.

    The controller and the daemon open the same file from two processes. Every write runs
    in `BEGIN IMMEDIATE`, which takes the write lock up front (waiting out the busy timeout)
    instead of upgrading a read lock mid-transaction, the upgrade two writers can deadlock on.
    """

    @classmethod
    async def open(cls, path: Path) -> SQLiteStore:
        """Open (creating and upgrading as needed) the store at `path`."""
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            need = ".".join(map(str, MIN_SQLITE))
            raise StoreError(
                f"the SQLite store needs SQLite {need} or newer (RETURNING, UPDATE ... FROM,"
                f" JSON functions); this Python has {sqlite3.sqlite_version}"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: no implicit BEGIN from the driver; transactions are ours.
            connection = await aiosqlite.connect(
                path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the SQLite store at {path}: {exc}") from exc
        connection.row_factory = sqlite3.Row
        store = cls(connection, SyncWriter(path, BUSY_TIMEOUT_MS / 1000, PRAGMAS))
        try:
            await store._prepare()
            await store._writer.open()
        except sqlite3.Error as exc:
            await connection.close()
            raise StoreError(f"cannot open the SQLite store at {path}: {exc}") from exc
        except BaseException:
            await connection.close()
            raise
        return store

    async def watch_changes(self, changed: Callable[[], None]) -> None:
        """Nothing to watch: the controller on this machine signals its daemon (SIGUSR1)."""

    async def close(self) -> None:
        """Flush and release the connection. Writes held for want of room are tried for
        CLOSE_HOLD_SECONDS more, then given up (the next daemon fails the runs they would
        have ended, saying so)."""
        await self._batcher.flush(give_up_after=CLOSE_HOLD_SECONDS)
        await self._writer.close()
        await self._db.close()
