"""The store's connection: pragmas, migrations, the lock, transactions and the run writes.

`SQLiteConnection` holds what every part of the store works through: the aiosqlite
connection (shared by all tasks of a process, so every use takes the lock), the named
queries, the writer thread and the batcher of run writes. It prepares a file when it is
opened (pragmas, WAL, pending migrations) and turns driver errors into the store's.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aiosqlite

from cronmgr.core.errors import StoreError, StoreFull
from cronmgr.store.batch import Write, WriteBatcher
from cronmgr.store.queries import load_queries, migrations
from cronmgr.store.records import Progress
from cronmgr.store.relational.columns import Row
from cronmgr.store.relational.connection import Refusal, RelationalConnection
from cronmgr.store.relational.rows import _progress_params
from cronmgr.store.relational.writes import PROGRESS_WRITE, WRITE_KINDS
from cronmgr.store.writer import Statement, SyncWriter, apply_writes, rollback, run_many

BUSY_TIMEOUT_MS = 5000

PRAGMAS = (
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=NORMAL",
)


def split_statements(script: str) -> list[str]:
    """The statements of an SQL script, one by one (executescript would commit first)."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if any(not line.strip().startswith("--") for line in pending.splitlines() if line.strip()):
        raise ValueError(f"incomplete SQL statement: {pending.strip()!r}")
    return statements


def _store_error(what: str, exc: sqlite3.Error) -> StoreError:
    """The driver's error in the store's words: StoreFull when the disk has no room.

    A full disk shows as SQLITE_FULL where the database or its WAL grows, and as one of the
    SQLITE_IOERR codes where the WAL index (the -shm file) grows; both are held and tried
    again by the run writes, never dropped."""
    code = getattr(exc, "sqlite_errorname", None) or ""
    if code == "SQLITE_FULL" or code.startswith("SQLITE_IOERR"):
        return StoreFull(f"store {what} failed: the disk is full or cannot be written ({exc})")
    return StoreError(f"store {what} failed: {exc}")


class SQLiteConnection(RelationalConnection):
    """The connection, its lock and transactions, and the run writes' way to the writer."""

    _integrity_errors = (sqlite3.IntegrityError,)

    def __init__(self, connection: aiosqlite.Connection, writer: SyncWriter) -> None:
        self._db = connection
        # Run writes go through a thread and connection of their own (see writer.py).
        self._writer = writer
        self._q = load_queries("sqlite")
        self._statements = {name: kind.prepared(self._q) for name, kind in WRITE_KINDS.items()}
        self._progress_statement = PROGRESS_WRITE.prepared(self._q)
        # All tasks of a process share this one connection: a transaction's statements must
        # not interleave with another task's, so every use of the connection takes the lock.
        self._lock = asyncio.Lock()
        # Run writes from many tasks share transactions (see store/batch.py).
        self._batcher = WriteBatcher(self._apply_writes, no_room=StoreFull)

    async def _prepare(self) -> None:
        for pragma in PRAGMAS:
            await self._db.execute(pragma)
        await self._enable_wal()
        if await self._pending_migrations():
            # Two processes may open a new file at once: look again under the write lock.
            async with self._transaction("migrate"):
                for version, script in await self._pending_migrations():
                    await self._migrate(version, script)

    async def _enable_wal(self) -> None:
        # Turning a new file to WAL needs an exclusive lock, and SQLite answers BUSY at once,
        # without its busy handler, while another process opens the same new file: retry.
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                await self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorname != "SQLITE_BUSY" or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.01)

    async def _pending_migrations(self) -> list[tuple[int, str]]:
        async with self._db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        current = row[0] if row else 0
        return [(version, sql) for version, sql in migrations(self._q) if version > current]

    async def _migrate(self, version: int, script: str) -> None:
        for statement in split_statements(script):
            await self._db.execute(statement)
        await self._db.execute(f"PRAGMA user_version={version}")

    @asynccontextmanager
    async def _guard(self, what: str) -> AsyncIterator[None]:
        """Exclusive use of the connection; driver errors become StoreError."""
        async with self._lock:
            try:
                yield
            except sqlite3.Error as exc:
                raise _store_error(what, exc) from exc

    @asynccontextmanager
    async def _transaction(self, what: str, begin: str = "BEGIN IMMEDIATE") -> AsyncIterator[None]:
        """One transaction, committed at the end of the block, rolled back on any error."""
        async with self._guard(what):
            try:
                # Inside the try: a task cancelled while BEGIN waits for the lock must still
                # roll back, or the connection would keep the write lock once BEGIN succeeds.
                await self._db.execute(begin)
                yield
                await self._db.commit()
            except BaseException:
                await self._db.rollback()
                raise

    def _snapshot(self, what: str) -> AbstractAsyncContextManager[None]:
        # A deferred transaction reads one snapshot of the WAL and takes no write lock.
        return self._transaction(what, begin="BEGIN")

    async def _run(self, name: str, params: Mapping[str, Any]) -> int:
        cursor = await self._db.execute(self._q[name], params)
        return cursor.rowcount

    async def _rows(self, name: str, params: Mapping[str, Any]) -> list[Row]:
        async with self._db.execute(self._q[name], params) as cursor:
            return list(await cursor.fetchall())

    def _constraint(self, exc: Exception) -> str | None:
        code = getattr(exc, "sqlite_errorname", None)
        if code == "SQLITE_CONSTRAINT_FOREIGNKEY":
            return Refusal.FOREIGN_KEY
        if code == "SQLITE_CONSTRAINT_UNIQUE" and str(exc).endswith(".name"):
            return Refusal.NAME_TAKEN
        if code in ("SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE"):
            return Refusal.ID_TAKEN
        return None

    async def _write_progress(self, progress: Sequence[Progress]) -> None:
        # On the writer thread, parameters included: the event loop only hands over the
        # tuples, and these writes queue behind run writes instead of racing them for the
        # write lock.
        call = functools.partial(_write_progress, self._progress_statement, progress)
        try:
            await self._writer.call(call)
        except sqlite3.Error as exc:
            raise _store_error("record_progress", exc) from exc

    async def _apply_writes(self, writes: Sequence[Write]) -> list[int]:
        """Apply queued run writes in one transaction, in one trip to the writer thread."""
        # A run's attempt goes in before its finish, whose trigger reads the attempt's
        # error class; a claim never shares a batch with its run's later writes.
        order = sorted(range(len(writes)), key=lambda i: WRITE_KINDS[writes[i].statement].order)
        ordered = [writes[i] for i in order]
        statements = [self._statements[w.statement] for w in ordered]
        params = [w.params for w in ordered]
        try:
            applied = await self._writer.call(functools.partial(apply_writes, statements, params))
        except sqlite3.Error as exc:
            raise _store_error("run writes", exc) from exc
        counts = [0] * len(writes)
        for index, count in zip(order, applied, strict=True):
            counts[index] = count
        return counts


def _write_progress(
    statement: Statement, chunk: Sequence[Progress], connection: sqlite3.Connection
) -> None:
    """Progress rows in one transaction of their own, on the writer thread."""
    params = [_progress_params(p) for p in chunk]
    connection.execute("BEGIN IMMEDIATE")
    try:
        run_many(connection, statement, params)
        connection.execute("COMMIT")
    except BaseException:
        rollback(connection)
        raise
