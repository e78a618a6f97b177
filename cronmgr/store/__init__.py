"""Where definitions, runs, attempts and stats are kept, behind one small interface.

It owns the `Store` protocol (`base`), the write batcher and its writer, the row checks on
read (`readable`), the file pipelines' schedules (`pipeline_sync`) and the SQLite store with
its SQL, and the PostgreSQL store that several hosts share; both run the operations of
`relational` over their own connections. `open_store` picks the backend from a URL. It
may import `cronmgr.core` only: the controller and the daemon both use it, and it knows
neither.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from cronmgr.core.config import STORE_SCHEMES
from cronmgr.core.errors import ConfigError
from cronmgr.store.base import Store
from cronmgr.store.postgres import PostgresStore
from cronmgr.store.sqlite import SQLiteStore

__all__ = ["Store", "open_store"]


SQLITE_SCHEME, *POSTGRES_SCHEMES = STORE_SCHEMES


async def _open(url: str) -> SQLiteStore | PostgresStore:
    if url.startswith(SQLITE_SCHEME):
        return await SQLiteStore.open(Path(url.removeprefix(SQLITE_SCHEME)))
    if url.startswith(tuple(POSTGRES_SCHEMES)):
        return await PostgresStore.open(url)
    raise ConfigError(
        f"unsupported store_url {url!r}: expected sqlite:///<path> or postgresql://<host>/<db>"
    )


@asynccontextmanager
async def open_store(url: str) -> AsyncIterator[Store]:
    """Open the store named by `url` (`sqlite:///path`, `postgresql://host/db`) for the
    life of the block."""
    store = await _open(url)
    try:
        yield store
    finally:
        await store.close()
