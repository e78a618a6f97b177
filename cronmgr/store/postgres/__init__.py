"""The PostgreSQL store: the same operations as SQLite's, for several hosts on one server.

`PostgresStore` runs `cronmgr/sql/postgres.sql`'s named queries (the twins of SQLite's)
through an asyncpg pool. Every daemon and controller of a cluster opens it; PostgreSQL
is the coordinator (row locks, unique slots, advisory locks), nothing home-made.
"""

from cronmgr.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
