"""Where definitions, runs, attempts and stats are kept, behind one small interface.

It owns the `Store` protocol (`base`), the write batcher and its writer, the row checks on
read (`readable`), the file pipelines' schedules (`pipeline_sync`) and the SQLite store with
its SQL; `open_store` picks the backend from a URL. It may import `cronmgr.core` only: the
controller and the daemon both use it, and it knows neither.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from cronmgr.core.errors import ConfigError
from cronmgr.store.base import Store
from cronmgr.store.sqlite import SQLiteStore

__all__ = ["Store", "open_store"]


@asynccontextmanager
async def open_store(url: str) -> AsyncIterator[Store]:
    """Open the store named by `url` (`sqlite:///path`) for the life of the block."""
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"unsupported database_url {url!r}: expected sqlite:///<path>")
    store = await SQLiteStore.open(Path(url.removeprefix("sqlite:///")))
    try:
        yield store
    finally:
        await store.close()
