"""What the store's operations need of a SQL backend: named queries, transactions, writes.

`RelationalConnection` is the seam between the operations written once (`definitions`,
`runs`, `stats`) and each backend's connection (`store/sqlite`, `store/postgres`). A
backend runs the same named queries (`cronmgr/sql/<dialect>.sql`, with the same names
and parameters), opens transactions and snapshots its own way, queues run writes in a
`WriteBatcher`, writes the engine's progress as suits it, and turns its driver's
constraint errors into the caller's words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from cronmgr.core.errors import Conflict, NotFound, StoreError
from cronmgr.store.batch import WriteBatcher
from cronmgr.store.records import Progress
from cronmgr.store.relational.columns import Row


class Refusal:
    """Which constraint a backend enforced on a definition write (see `refused`)."""

    FOREIGN_KEY = "foreign key"
    NAME_TAKEN = "name taken"
    ID_TAKEN = "id taken"


def refusal_error(
    constraint: str | None, exc: Exception, kind: str, name: str, target_id: str | None
) -> Exception:
    """The caller's words for a constraint the store enforced on a target or schedule."""
    if constraint == Refusal.FOREIGN_KEY:
        return NotFound(f"target {target_id!r} does not exist")
    if constraint == Refusal.NAME_TAKEN:
        return Conflict(f"a {kind} named {name!r} already exists")
    if constraint == Refusal.ID_TAKEN:
        return Conflict(f"a {kind} with this id already exists: {exc}")
    return StoreError(f"the store refused the {kind} {name!r}: {exc}")


class RelationalConnection:
    """The connection-level operations every relational backend provides."""

    _q: dict[str, str]
    """The dialect's named queries."""
    _batcher: WriteBatcher
    """Run writes from many tasks, sharing transactions (see store/batch.py)."""
    _integrity_errors: tuple[type[Exception], ...] = ()
    """The driver's exceptions for a refused constraint (see `_constraint`)."""

    def _guard(self, what: str) -> AbstractAsyncContextManager[None]:
        """Use of the connection for several statements; driver errors become StoreError."""
        raise NotImplementedError

    def _transaction(self, what: str) -> AbstractAsyncContextManager[None]:
        """One write transaction, committed at the end of the block, rolled back on error."""
        raise NotImplementedError

    def _snapshot(self, what: str) -> AbstractAsyncContextManager[None]:
        """Reads that see one consistent state of the store."""
        raise NotImplementedError

    async def _run(self, name: str, params: Mapping[str, Any]) -> int:
        """Run a named statement inside `_guard` or a transaction; the rows it changed."""
        raise NotImplementedError

    async def _rows(self, name: str, params: Mapping[str, Any]) -> list[Row]:
        """The rows of a named query, inside `_guard` or a transaction."""
        raise NotImplementedError

    async def _write_progress(self, progress: Sequence[Progress]) -> None:
        """Write the engine's bookkeeping rows (see SchedulesMixin.record_progress)."""
        raise NotImplementedError

    def _constraint(self, exc: Exception) -> str | None:
        """Which `Refusal` an integrity error is, None when none of them."""
        raise NotImplementedError

    async def _read(self, name: str, params: Mapping[str, Any]) -> list[Row]:
        async with self._guard(name):
            return await self._rows(name, params)

    async def _write(self, name: str, params: Mapping[str, Any]) -> int:
        # A single statement commits on its own (autocommit).
        async with self._guard(name):
            return await self._run(name, params)

    async def _bump_revision(self) -> None:
        await self._run("bump_revision", {})
