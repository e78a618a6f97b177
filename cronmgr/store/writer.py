"""A thread of its own for the run writes: one hop there and back per batch.

Through aiosqlite every statement is a trip to its thread and back: BEGIN, one
executemany per statement, COMMIT, each waking the thread and then the event loop, so a
thousand runs a second cost many thousands of wake-ups, which on a small VM cost more CPU
than SQLite's own work. Here a whole batch is one function, run on this thread against
its own connection: one wake-up each way, however many writes the batch holds, and the
event loop never waits on disk.

The daemon's other connection (aiosqlite's) takes the write lock in turn with this one
through SQLite's busy handler, as the controller's and the daemon's always have; each
transaction here is one function call, so neither can hold the lock across an await.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import orjson
import structlog

from cronmgr.core.supervision import describe

T = TypeVar("T")
log = structlog.get_logger("cronmgr.store")

WRITER_NICENESS = 5
"""How much nicer than the event loop the writer thread runs (Linux, where a thread has a
nice value of its own). The loop sends requests at their slot; the writer's batches can
wait a moment. With the bench target on the same two cores, the lag p99 at 1,000 runs a
second went from 1.7 ms (three runs) to 1.2-1.6 ms (four of five runs). 5, not more, so a
machine busy with other work still leaves the writer a fair share (a third of a nice-0
thread's)."""

_Job = tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]
_STOP = None


class SyncWriter:
    """A thread with its own SQLite connection, running one function at a time."""

    def __init__(self, path: Path, timeout: float, pragmas: Iterable[str]) -> None:
        self._path = path
        self._timeout = timeout
        self._pragmas = tuple(pragmas)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._opened: asyncio.Future[None] | None = None
        self._thread: threading.Thread | None = None
        self._death: RuntimeError | None = None  # why the thread stopped, if it did
        self.native_id: int | None = None
        """The writer thread's id in the kernel, once it runs."""

    async def open(self) -> None:
        """Start the thread and open its connection; raises what opening raised."""
        loop = asyncio.get_running_loop()
        self._opened = loop.create_future()
        self._thread = threading.Thread(
            target=self._serve, args=(loop,), name="cronmgr store writer", daemon=True
        )
        self._thread.start()
        await self._opened

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(connection)` on the writer thread; its result or its exception."""
        if self._thread is None:
            raise RuntimeError("the store writer is not open")
        if self._death is not None:
            raise self._death
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((fn, future))
        return await future

    async def close(self) -> None:
        """Finish the functions queued so far, close the connection, end the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._jobs.put(_STOP)
        await asyncio.to_thread(thread.join)

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._opened is not None
        self.native_id = threading.get_native_id()
        _be_nicer(self.native_id)
        try:
            connection = sqlite3.connect(
                self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            for pragma in self._pragmas:
                connection.execute(pragma)
        except BaseException as exc:
            loop.call_soon_threadsafe(_settle, self._opened, None, exc)
            return
        loop.call_soon_threadsafe(_settle, self._opened, None, None)
        try:
            self._run_jobs(loop, connection)
        except BaseException as exc:  # a bug of this loop: no call may wait on it forever
            self._died(loop, exc)
        finally:
            connection.close()

    def _run_jobs(self, loop: asyncio.AbstractEventLoop, connection: sqlite3.Connection) -> None:
        while (job := self._jobs.get()) is not _STOP:
            fn, future = job
            try:
                result, error = fn(connection), None
            except BaseException as exc:
                result, error = None, exc
            # A closed loop raises RuntimeError: nobody is left to tell.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, result, error)

    def _died(self, loop: asyncio.AbstractEventLoop, exc: BaseException) -> None:
        """Say so, and fail the calls waiting and every later one with the reason."""
        self._death = RuntimeError(f"the store writer thread stopped: {describe(exc)}")
        log.critical("task_died", task="store writer", error=describe(exc), exc_info=exc)
        with contextlib.suppress(queue.Empty, RuntimeError):
            while (job := self._jobs.get_nowait()) is not _STOP:
                loop.call_soon_threadsafe(_settle, job[1], None, self._death)


def _be_nicer(thread_id: int) -> None:
    """Lower this thread's priority by WRITER_NICENESS, on Linux (elsewhere the call would
    renice the whole process); refused, it runs as it is."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError):
        current = os.getpriority(os.PRIO_PROCESS, thread_id)
        os.setpriority(os.PRIO_PROCESS, thread_id, min(19, current + WRITER_NICENESS))


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # its caller was cancelled: the work was done all the same
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Statement(NamedTuple):
    """An SQL statement of the run writes, as `apply_writes` runs it."""

    sql: str
    may_skip: bool = False
    """Whether it may change no row (a run whose slot is taken): rows are counted then."""
    bulk: str | None = None
    """The same for every object of a JSON array `:rows` (see sqlite.sql's `_bulk` forms)."""
    key: str | None = None
    """The parameter naming the row an UPDATE changes: a group in which two writes name
    the same row is run row by row, in order (an UPDATE ... FROM would apply only one)."""


def apply_writes(
    statements: list[Statement], params: list[dict[str, Any]], connection: sqlite3.Connection
) -> list[int]:
    """Apply writes in one transaction, one statement per group of equal statements; the
    rows each one changed.

    Each task awaits its own write before making the next, so a batch holds at most one
    write of a statement per run, and the order of the groups does not matter.
    """
    if len(params) == 1:
        # Alone, a write commits on its own: no BEGIN and COMMIT around it.
        return [connection.execute(statements[0].sql, params[0]).rowcount]
    groups: dict[Statement, list[int]] = {}
    for index, statement in enumerate(statements):
        groups.setdefault(statement, []).append(index)
    counts = [0] * len(params)
    connection.execute("BEGIN IMMEDIATE")
    try:
        for statement, indexes in groups.items():
            applied = _apply_group(connection, statement, [params[i] for i in indexes])
            for index, count in zip(indexes, applied, strict=True):
                counts[index] = count
        connection.execute("COMMIT")
    except BaseException:
        rollback(connection)
        raise
    return counts


def rollback(connection: sqlite3.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already: it does so by itself on
    a full disk (SQLITE_FULL) and on I/O errors, and a ROLLBACK then would fail with "no
    transaction is active", hiding the error that matters."""
    if connection.in_transaction:
        connection.execute("ROLLBACK")


def _apply_group(
    connection: sqlite3.Connection, statement: Statement, params: list[dict[str, Any]]
) -> list[int]:
    if len(params) == 1:
        return [connection.execute(statement.sql, params[0]).rowcount]
    changed = run_many(connection, statement, params)
    if changed == len(params) or not statement.may_skip:
        return [1] * len(params)
    # Some slots were taken already: the runs that went in are the ones now there.
    ids = [p["id"] for p in params]
    marks = ",".join("?" * len(ids))
    found = connection.execute(f"SELECT id FROM runs WHERE id IN ({marks})", ids)
    present = {row[0] for row in found.fetchall()}
    return [int(run_id in present) for run_id in ids]


def run_many(
    connection: sqlite3.Connection, statement: Statement, params: list[dict[str, Any]]
) -> int:
    """Run `statement` for each of `params`, in one statement where it has a bulk form; the
    rows changed in all."""
    if statement.bulk is None or (
        statement.key is not None and len({p[statement.key] for p in params}) < len(params)
    ):
        return connection.executemany(statement.sql, params).rowcount
    # Text: JSON functions before SQLite 3.45 refuse a blob.
    rows = orjson.dumps(params).decode()
    return connection.execute(statement.bulk, {"rows": rows}).rowcount
