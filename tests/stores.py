"""Both stores for one test body: `store` runs each test against SQLite and PostgreSQL.

PostgreSQL is the machine's real server (CRONMGR_TEST_PG, default 127.0.0.1:5432 as
postgres): each xdist worker gets a database of its own, and each test a fresh schema in
it, dropped afterwards, so tests never see each other's rows. Where no server answers,
the PostgreSQL half of every such test is skipped, saying so.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from cronmgr.store import Store, open_store

PG_SERVER = os.environ.get("CRONMGR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
"""The server the tests use, as a URL of its maintenance database."""
BACKENDS = ("sqlite", "postgres")


def _with_database(url: str, database: str, **query: str) -> str:
    parts = urlsplit(url)
    extra = "&".join(f"{key}={value}" for key, value in query.items())
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", extra, ""))


async def _admin(sql: str, url: str = PG_SERVER) -> None:
    connection = await asyncpg.connect(url, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def _unreachable() -> str | None:
    """Why PostgreSQL cannot be used here, None when it can."""
    try:
        asyncio.run(_admin("SELECT 1"))
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return f"no PostgreSQL server answers at {PG_SERVER} ({exc or type(exc).__name__})"
    return None


@pytest.fixture(scope="session")
def pg_database(worker_id: str) -> Iterator[str]:
    """A database of this worker's own on the test server; skipped without a server."""
    if (reason := _unreachable()) is not None:
        pytest.skip(reason)
    # The process id too: two test sessions at once on one server (a second checkout,
    # a helper's run) must not drop each other's databases.
    name = f"cronmgr_test_{worker_id}_{os.getpid()}".replace("-", "_")
    asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    asyncio.run(_admin(f"CREATE DATABASE {name}"))
    yield _with_database(PG_SERVER, name)
    asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """The URL of a fresh, empty schema in the worker's database (search_path set)."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    asyncio.run(_admin(f"CREATE SCHEMA {schema}", pg_database))
    database = urlsplit(pg_database).path.lstrip("/")
    yield _with_database(pg_database, database, search_path=schema)
    asyncio.run(_admin(f"DROP SCHEMA IF EXISTS {schema} CASCADE", pg_database))


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL of each backend in turn: a new SQLite file, a new PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'var' / 'cronmgr.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """The store at `store_url`, open for the test."""
    async with open_store(store_url) as opened:
        yield opened
