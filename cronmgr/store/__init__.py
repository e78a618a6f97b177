"""Persistence behind one small interface; `open_store` picks the backend from a URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from cronmgr.errors import ConfigError
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
