"""The kinds of run write the batcher may queue, the same for every SQL backend.

Each kind of run write is one `WriteKind` row: its named query, its place in a shared
transaction, which row it changes and whether it may change none. Progress is not a run
write: each backend writes it in transactions of its own (`_write_progress`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from cronmgr.store.writer import Statement


@dataclasses.dataclass(frozen=True, slots=True)
class WriteKind:
    """One kind of run write, all the store needs to know of it in one place: adding a
    kind is one row of `WRITE_KINDS` (and its named query in each dialect's SQL file)."""

    statement: str
    """The named query it runs; a `<statement>_bulk` query, if any, is its bulk form."""
    order: int
    """Its place in a batch: writes are applied lowest first (see `WRITE_KINDS`)."""
    key: str | None = None
    """The parameter naming the row an UPDATE changes (see writer.Statement.key)."""
    may_skip: bool = False
    """Whether it may change no row (see writer.Statement.may_skip)."""

    def prepared(self, queries: Mapping[str, str]) -> Statement:
        """The statement `apply_writes` runs for it."""
        sql, bulk = queries[self.statement], queries.get(f"{self.statement}_bulk")
        return Statement(sql=sql, may_skip=self.may_skip, bulk=bulk, key=self.key)


# A start goes before a release, which then spares that run; a release before a claim, so
# a slot released and claimed again in one batch is taken; an attempt before the end whose
# trigger reads its error class. (A start or a release waits for its claim to commit.)
WRITE_KINDS = {
    kind.statement: kind
    for kind in (
        WriteKind("start_run", 0, key="id"),
        WriteKind("release_claim", 1),
        WriteKind("insert_run", 2, may_skip=True),  # a slot already taken: no row
        WriteKind("record_step_group", 3),  # migration 5
        WriteKind("insert_step_result", 4),
        WriteKind("update_run", 5, key="id"),
    )
}
"""The run writes the batcher may queue, by statement name."""


PROGRESS_WRITE = WriteKind("record_progress", -1, key="schedule_id")
"""Progress, written in transactions of its own, never in a batch of run writes."""


_ALL_WRITES = {**WRITE_KINDS, PROGRESS_WRITE.statement: PROGRESS_WRITE}


def _statement(queries: Mapping[str, str], name: str) -> Statement:
    """The statement of the write kind `name`, run writes and progress alike."""
    return _ALL_WRITES[name].prepared(queries)
