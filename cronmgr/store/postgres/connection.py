"""The PostgreSQL store's connections: a pool, transactions per task, and the run writes.

Each task that opens a transaction (or a guarded series of statements) takes a connection
of the pool for the block and finds it again through a context variable, so tasks never
share one, and nothing but the pool is held between blocks. Connections that broke (the
server restarted, the backend was terminated) are replaced by the pool on the next
acquire; while none can be made, the store raises `StoreUnavailable`, which the run
writes wait out in the batcher (held, as on a full disk) and the API answers with 503.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson

from cronmgr.core.errors import StoreError, StoreFull, StoreUnavailable
from cronmgr.store.batch import Write, WriteBatcher
from cronmgr.store.postgres.sql import Query, compile_queries, rows_changed
from cronmgr.store.queries import load_queries
from cronmgr.store.records import Progress
from cronmgr.store.relational.connection import Refusal, RelationalConnection
from cronmgr.store.relational.rows import _progress_params
from cronmgr.store.relational.writes import PROGRESS_WRITE, WRITE_KINDS, WriteKind

# SQLSTATE classes of a connection that is gone or going: 08 connection exception, 57
# operator intervention (admin shutdown, pg_terminate_backend), 53 insufficient resources
# but for a full disk (too many connections, out of memory).
_UNAVAILABLE_CLASSES = ("08", "57", "53")
_DISK_FULL = "53100"
_LOST = (OSError, asyncio.TimeoutError, asyncpg.InterfaceError)


def store_error(what: str, exc: BaseException) -> StoreError:
    """The driver's error in the store's words: unavailable, full, or failed."""
    state = getattr(exc, "sqlstate", None) or ""
    if state == _DISK_FULL:
        return StoreFull(f"store {what} failed: the database server's disk is full ({exc})")
    if isinstance(exc, _LOST) or state[:2] in _UNAVAILABLE_CLASSES:
        reason = str(exc) or type(exc).__name__
        return StoreUnavailable(
            f"store {what} failed: the PostgreSQL store is unreachable ({reason})"
        )
    return StoreError(f"store {what} failed: {exc}")


def _is_driver_error(exc: BaseException) -> bool:
    return isinstance(exc, (asyncpg.PostgresError, *_LOST))


class PostgresConnection(RelationalConnection):
    """The pool, per-task transactions, and the batcher's way to apply run writes."""

    _integrity_errors = (asyncpg.IntegrityConstraintViolationError,)

    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        self._pool = pool
        self._url = url
        """Where the pool connects; connections of their own (locks, LISTEN) use it too."""
        self._q = load_queries("postgres")
        self._queries: dict[str, Query] = compile_queries(self._q)
        self._current: contextvars.ContextVar[asyncpg.Connection | None] = contextvars.ContextVar(
            "cronmgr_pg_connection", default=None
        )
        # Unreachable is held like full: the writes wait for the server to come back.
        self._batcher = WriteBatcher(self._apply_writes, no_room=(StoreFull, StoreUnavailable))

    @asynccontextmanager
    async def _connection(self, what: str) -> AsyncIterator[asyncpg.Connection]:
        """A connection of the pool for the block (the task's own if it holds one)."""
        held = self._current.get()
        if held is not None:
            yield held
            return
        try:
            async with self._pool.acquire() as connection:
                token = self._current.set(connection)
                try:
                    yield connection
                finally:
                    self._current.reset(token)
        except BaseException as exc:
            if _is_driver_error(exc) and not isinstance(exc, self._integrity_errors):
                raise store_error(what, exc) from exc
            raise

    @asynccontextmanager
    async def _guard(self, what: str) -> AsyncIterator[None]:
        async with self._connection(what):
            yield

    @asynccontextmanager
    async def _transaction(self, what: str) -> AsyncIterator[None]:
        async with self._connection(what) as connection, connection.transaction():
            yield

    @asynccontextmanager
    async def _snapshot(self, what: str) -> AsyncIterator[None]:
        async with (
            self._connection(what) as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield

    def _held(self) -> asyncpg.Connection:
        connection = self._current.get()
        if connection is None:  # a bug of the store: every statement runs inside a block
            raise RuntimeError("a store statement ran outside _guard or _transaction")
        return connection

    async def _run(self, name: str, params: Mapping[str, Any]) -> int:
        query = self._queries[name]
        return rows_changed(await self._held().execute(query.sql, *query.args(params)))

    async def _rows(self, name: str, params: Mapping[str, Any]) -> list[Any]:
        query = self._queries[name]
        return list(await self._held().fetch(query.sql, *query.args(params)))

    def _constraint(self, exc: Exception) -> str | None:
        if isinstance(exc, asyncpg.ForeignKeyViolationError):
            return Refusal.FOREIGN_KEY
        if isinstance(exc, asyncpg.UniqueViolationError):
            constraint = getattr(exc, "constraint_name", "") or ""
            return Refusal.NAME_TAKEN if constraint.endswith("_name_key") else Refusal.ID_TAKEN
        return None

    async def _write_progress(self, progress: Sequence[Progress]) -> None:
        params = [_progress_params(p) for p in progress]
        async with self._transaction("record_progress"):
            await self._apply_group(PROGRESS_WRITE, params)

    async def _apply_writes(self, writes: Sequence[Write]) -> list[int]:
        """Apply queued run writes in one transaction, one statement per kind of write."""
        # Kinds in their order (an attempt before the end whose trigger reads it; a
        # release before a claim of the same slot), each kind's writes in queue order.
        groups: dict[str, list[int]] = {}
        for index, write in enumerate(writes):
            groups.setdefault(write.statement, []).append(index)
        counts = [0] * len(writes)
        async with self._transaction("run writes"):
            for name in sorted(groups, key=lambda n: WRITE_KINDS[n].order):
                indexes = groups[name]
                applied = await self._apply_group(
                    WRITE_KINDS[name], [writes[i].params for i in indexes]
                )
                for index, count in zip(indexes, applied, strict=True):
                    counts[index] = count
        return counts

    async def _apply_group(self, kind: WriteKind, params: list[dict[str, Any]]) -> list[int]:
        """One kind of write for many rows: the rows each one changed."""
        connection = self._held()
        single = self._queries[kind.statement]
        if len(params) == 1:
            return [rows_changed(await connection.execute(single.sql, *single.args(params[0])))]
        bulk = self._queries.get(f"{kind.statement}_bulk")
        repeats = kind.key is not None and len({p[kind.key] for p in params}) < len(params)
        if bulk is None or repeats:
            # Row by row, in order: an UPDATE ... FROM would apply one of two writes of a row.
            await connection.executemany(single.sql, [single.args(p) for p in params])
            return [1] * len(params)
        rows = orjson.dumps(params).decode()
        if not kind.may_skip:
            await connection.execute(bulk.sql, rows)
            return [1] * len(params)
        # Slots already taken insert nothing: RETURNING names the rows that went in.
        taken = {record[0] for record in await connection.fetch(bulk.sql, rows)}
        return [int(p[kind.key or "id"] in taken) for p in params]
