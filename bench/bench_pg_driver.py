"""The PostgreSQL driver's cost per recorded run: asyncpg (the store's) against psycopg 3.

Both drivers send the same statements the store sends for a run, in the same shapes: a
batch of claims as one `jsonb_to_recordset` insert with RETURNING, their ends as one
bulk update, and a lone autocommit write, each through the driver's own pool. What is
compared is the client process's CPU time per run: the server's work is the same for
both. Skipped, saying so, where no PostgreSQL server answers on 127.0.0.1:5432.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from typing import Any

import orjson

SERVER = os.environ.get("CRONMGR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BATCH = 20  # runs per transaction: 1,000 runs a second with the batcher's 20 ms linger
ROUNDS = 150
REPEATS = 5
TABLE = "cronmgr_bench_driver_runs"
DDL = f"""DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (id text PRIMARY KEY, job text, scheduled_for text, status text,
                      started_at text, finished_at text, error text)"""
INSERT = f"""INSERT INTO {TABLE}
SELECT * FROM jsonb_to_recordset(CAST({{p}} AS jsonb)) AS w(id text, job text,
    scheduled_for text, status text, started_at text, finished_at text, error text)
ON CONFLICT DO NOTHING RETURNING id"""
UPDATE = f"""UPDATE {TABLE} SET status = w.status, finished_at = w.finished_at
FROM jsonb_to_recordset(CAST({{p}} AS jsonb)) AS w(id text, status text, finished_at text)
WHERE {TABLE}.id = w.id"""
LONE = f"UPDATE {TABLE} SET error = {{p}} WHERE id = {{q}}"


def run() -> list[dict[str, Any]]:
    """One row: asyncpg's client CPU per run, psycopg's as the peer."""
    name = "PostgreSQL driver: client CPU per recorded run"
    try:
        asyncpg_ms, psycopg_ms = asyncio.run(_measure())
    except (OSError, ImportError) as exc:
        return [{"name": name, "value": None, "unit": "ms", "target": f"skipped: {exc}"}]
    return [
        {
            "name": name,
            "value": round(asyncpg_ms, 3),
            "peer": round(psycopg_ms, 3),
            "unit": "ms",
            "target": "asyncpg (the store's) <= psycopg 3 (peer)",
            "ok": "yes" if asyncpg_ms <= psycopg_ms else "NO",
        }
    ]


async def _measure() -> tuple[float, float]:
    a = [await _with_asyncpg() for _ in range(REPEATS)]
    p = [await _with_psycopg() for _ in range(REPEATS)]
    return statistics.median(a), statistics.median(p)


def _batch() -> tuple[list[str], str, str]:
    ids = [str(uuid.uuid4()) for _ in range(BATCH)]
    slot = "2026-01-01T00:00:00.000000+00:00"
    claims = [
        {"id": i, "job": "pipeline:etl", "scheduled_for": slot, "status": "pending"}
        | {"started_at": None, "finished_at": None, "error": None}
        for i in ids
    ]
    ends = [{"id": i, "status": "succeeded", "finished_at": slot} for i in ids]
    return ids, orjson.dumps(claims).decode(), orjson.dumps(ends).decode()


async def _with_asyncpg() -> float:
    import asyncpg

    pool = await asyncpg.create_pool(SERVER, min_size=1, max_size=2)
    try:
        async with pool.acquire() as c:
            await c.execute(DDL)
        started = time.process_time()
        for _ in range(ROUNDS):
            ids, claims, ends = _batch()
            async with pool.acquire() as c, c.transaction():
                await c.fetch(INSERT.format(p="$1"), claims)
            async with pool.acquire() as c, c.transaction():
                await c.execute(UPDATE.format(p="$1"), ends)
            async with pool.acquire() as c:
                await c.execute(LONE.format(p="$1", q="$2"), "x", ids[0])
        return (time.process_time() - started) / (ROUNDS * BATCH) * 1000
    finally:
        async with pool.acquire() as c:
            await c.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await pool.close()


async def _with_psycopg() -> float:
    from psycopg_pool import AsyncConnectionPool

    pool = AsyncConnectionPool(SERVER, min_size=1, max_size=2, open=False)
    await pool.open()
    try:
        async with pool.connection() as c:
            await c.execute(DDL)
        started = time.process_time()
        for _ in range(ROUNDS):
            ids, claims, ends = _batch()
            async with pool.connection() as c:  # a transaction, committed on the way out
                await (await c.execute(INSERT.format(p="%s"), (claims,))).fetchall()
            async with pool.connection() as c:
                await c.execute(UPDATE.format(p="%s"), (ends,))
            async with pool.connection() as c:
                await c.execute(LONE.format(p="%s", q="%s"), ("x", ids[0]))
        return (time.process_time() - started) / (ROUNDS * BATCH) * 1000
    finally:
        async with pool.connection() as c:
            await c.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await pool.close()
