"""The SQLite store: `SQLiteStore` on one file in WAL mode, and the pragmas it opens with."""

from __future__ import annotations

from cronmgr.store.sqlite.connection import PRAGMAS
from cronmgr.store.sqlite.store import SQLiteStore

__all__ = ["PRAGMAS", "SQLiteStore"]
