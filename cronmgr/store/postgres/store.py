"""The shared store: one PostgreSQL database that any number of daemons and controllers use.

`PostgresStore` is the `Store` on that database: the operations every SQL backend shares
(store/relational) over a pool of asyncpg connections (`connection`). Here it is opened,
its schema brought up to date, and closed. Two processes starting at once must not both
migrate: the upgrade runs in one transaction under an advisory lock, and the second one
finds nothing left to do.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import asyncpg

from cronmgr.core.errors import StoreError
from cronmgr.store.postgres.connection import PostgresConnection, store_error
from cronmgr.store.postgres.listen import ChangeListener
from cronmgr.store.queries import load_queries, migrations
from cronmgr.store.relational.definitions import SchedulesMixin, TargetsMixin
from cronmgr.store.relational.nodes import NodesMixin
from cronmgr.store.relational.runs import RunsMixin
from cronmgr.store.relational.stats import MetricsMixin

POOL_MAX = 8
"""Connections per process: the batcher's one, the reads of a busy API, a listener."""
CONNECT_TIMEOUT_SECONDS = 5.0
COMMAND_TIMEOUT_SECONDS = 60.0
"""No statement of the store takes long; one that does is a server in trouble."""
CLOSE_HOLD_SECONDS = 10.0
"""How long a closing store goes on trying writes held while the server was away."""
STATEMENT_CACHE = 256  # every named query, prepared once per connection

_SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version integer NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""
# One lock per schema, so stores in different schemas of one database do not wait on
# each other; taken for the transaction only, so a migrator that dies frees it.
# A session lock: it lasts as long as the daemon's own connection, and a daemon killed with
# -9 loses it when the server sees the connection close.
_MIGRATE_LOCK = "SELECT pg_advisory_xact_lock(hashtext('cronmgr migrate ' || current_schema()))"


def describe_url(url: str) -> str:
    """The store's address without its password, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"postgresql://{user}{host}{port}{parts.path}"


class PostgresStore(
    TargetsMixin, SchedulesMixin, RunsMixin, MetricsMixin, NodesMixin, PostgresConnection
):
    """The Store on a PostgreSQL database.

    Uniqueness of a slot, of an open incident and of a name is PostgreSQL's to enforce, as
    SQLite's is on one file; every write is a transaction of its own connection.
    """

    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        super().__init__(pool, url)
        self._listeners: list[ChangeListener] = []

    @classmethod
    async def open(cls, url: str) -> PostgresStore:
        """Connect to the database at `url` and bring its schema up to date."""
        where = describe_url(url)
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=POOL_MAX,
                timeout=CONNECT_TIMEOUT_SECONDS,
                command_timeout=COMMAND_TIMEOUT_SECONDS,
                statement_cache_size=STATEMENT_CACHE,
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise _open_error(where, exc) from exc
        store = cls(pool, url)
        try:
            await store._migrate()
        except BaseException:
            await pool.close()
            raise
        return store

    async def _migrate(self) -> None:
        async with self._guard("migrate"):
            connection = self._held()
            async with connection.transaction():
                await connection.execute(_MIGRATE_LOCK)
                await connection.execute(_SCHEMA_TABLE)
                current = await connection.fetchval(
                    "SELECT COALESCE(max(version), 0) FROM schema_version"
                )
                for version, script in migrations(load_queries("postgres")):
                    if version > current:
                        await connection.execute(script)
                        await connection.execute(
                            "INSERT INTO schema_version (version) VALUES ($1)", version
                        )

    async def watch_changes(self, changed: Callable[[], None]) -> None:
        """Call `changed()` on every change notice (LISTEN/NOTIFY, see `listen`)."""
        listener = ChangeListener(self._url, changed)
        try:
            await listener.start()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise store_error("watch_changes", exc) from exc
        self._listeners.append(listener)

    async def close(self) -> None:
        """Flush and release the pool. Writes held while the server is away are tried for
        CLOSE_HOLD_SECONDS more, then given up (the next daemon fails the runs they would
        have ended, saying so)."""
        for listener in self._listeners:
            await listener.close()
        await self._batcher.flush(give_up_after=CLOSE_HOLD_SECONDS)
        await self._pool.close()


def _open_error(where: str, exc: BaseException) -> StoreError:
    error = store_error("open", exc)
    return type(error)(f"cannot open the PostgreSQL store at {where}: {exc or type(exc).__name__}")
