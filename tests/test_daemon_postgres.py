"""A real daemon on the PostgreSQL store: changes written anywhere reach it through the
store alone, and a second daemon on the same store joins it as a node of its own."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from aiohttp.test_utils import TestServer
from support import Controller, add_target_schedule, until
from test_engine import Hits, runs_of, start_daemon, target_server

from cronmgr.core.models import NodeState, RunStatus
from cronmgr.core.pidfile import inspect
from cronmgr.store import open_store

__all__ = ["target_server"]


async def test_a_schedule_written_without_a_signal_runs_on_the_daemon_of_the_store(
    controller_factory: Callable[..., Controller],
    pg_url: str,
    target_server: tuple[TestServer, Hits],
) -> None:
    """Written by another home's store connection and nobody signals the daemon: the
    store's change notice alone brings the schedule to it."""
    server, hits = target_server
    running = controller_factory(database_url=pg_url)
    await start_daemon(running)
    elsewhere = controller_factory(database_url=pg_url)
    schedule = await add_target_schedule(elsewhere, server, "/ok", tell=False, max_runs=2)

    async def ran_twice() -> bool:
        runs = await runs_of(running, schedule.id)
        return [r.status for r in runs] == [RunStatus.SUCCEEDED] * 2

    await until(ran_twice, what="two runs of the schedule written elsewhere")
    assert hits.count("/ok") == 2


async def test_a_second_daemon_on_one_store_joins_it_as_another_node(
    controller_factory: Callable[..., Controller], pg_url: str
) -> None:
    first = controller_factory(database_url=pg_url)
    await start_daemon(first)
    second = controller_factory(database_url=pg_url)
    await start_daemon(second)
    async with open_store(pg_url) as store:
        nodes = await store.list_nodes()
    assert [n.state for n in nodes] == [NodeState.LIVE, NodeState.LIVE]
    assert len({n.id for n in nodes}) == 2
    assert {n.pid for n in nodes} == {_daemon_pid(first), _daemon_pid(second)}
    # Each host's status names its own daemon's node.
    assert {await _status_node(c) for c in (first, second)} == {n.id for n in nodes}


async def _status_node(controller: Controller) -> str:
    async with (
        aiohttp.ClientSession(controller.url, headers=controller.headers) as http,
        http.get("/api/cron/status") as response,
    ):
        node: str = (await response.json())["node"]
        return node


def _daemon_pid(controller: Controller) -> int | None:
    process = inspect(controller.settings.pid_file).process
    return process.pid if process is not None else None
