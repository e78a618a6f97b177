"""`GET /api/v1/nodes` against real controllers and real daemons: one daemon on its SQLite
file, three on one PostgreSQL store (one of them with a pipeline file of its own), and the
503 while the PostgreSQL server cannot be reached.
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from pgproxy import PgProxy, pg_proxy
from support import Controller, until
from test_engine import start_daemon

from cronmgr.core.launch import STATE_FILENAME, read_json
from cronmgr.core.pidfile import inspect

HEX16 = re.compile(r"[0-9a-f]{16}")
DEMO_PIPELINES = {"default", "quick", "slow"}
OTHERWISE = """\
description = "the slow pipeline, as this home alone has it"

[[steps]]
name = "nap"
shell = "sleep 1"
"""


async def nodes_of(controller: Controller) -> list[dict[str, Any]]:
    """What `GET /api/v1/nodes` answers `controller`."""
    async with (
        aiohttp.ClientSession(controller.url, headers=controller.headers) as http,
        http.get("/api/v1/nodes") as response,
    ):
        assert response.status == 200, await response.text()
        found: list[dict[str, Any]] = await response.json()
        return found


async def stop_daemon(controller: Controller) -> None:
    """Stop the daemon through the API; it leaves the store's nodes on its way out."""
    async with (
        aiohttp.ClientSession(controller.url, headers=controller.headers) as http,
        http.post("/api/cron/stop") as response,
    ):
        assert response.status == 200, await response.text()


def daemon_pid(controller: Controller) -> int:
    """The pid of the controller's running daemon."""
    process = inspect(controller.settings.pid_file).process
    assert process is not None, "the daemon is not running"
    return process.pid


async def node_id_of(controller: Controller) -> str:
    """The node id the daemon wrote into its state file (at its first heartbeat, which
    may come a moment after it reported ready)."""

    def written() -> str | None:
        state = read_json(controller.settings.state_path / STATE_FILENAME) or {}
        return state.get("node")

    node: str = await until(written, what="the daemon's state file to name its node")
    return node


def file_hash(controller: Controller, name: str) -> str:
    """The content hash of a pipeline file of the controller's home, as nodes report it."""
    content = (controller.settings.pipelines_path / f"{name}.toml").read_bytes()
    return hashlib.sha256(content).hexdigest()[:16]


async def documented_node_fields(controller: Controller) -> set[str]:
    """The properties of the `Node` schema of the controller's OpenAPI document."""
    async with aiohttp.ClientSession(controller.url) as http, http.get("/openapi.json") as r:
        document = await r.json()
    return set(document["components"]["schemas"]["Node"]["properties"])


async def test_one_daemon_on_sqlite_is_one_live_node_of_this_host(controller: Controller) -> None:
    """Before a start the list is empty; then the daemon's node: its pid, this host, the
    demo pipelines with their files' hashes, a lease that holds; once stopped, `left`."""
    assert await nodes_of(controller) == []
    await start_daemon(controller)
    (node,) = await nodes_of(controller)
    assert set(node) == await documented_node_fields(controller)
    assert node["id"] == await node_id_of(controller)
    assert node["pid"] == daemon_pid(controller)
    assert node["state"] == "live" and node["this_host"] is True
    assert node["host"] == socket.gethostname()
    assert set(node["pipelines"]) >= DEMO_PIPELINES
    assert all(HEX16.fullmatch(digest) for digest in node["pipelines"].values())
    assert node["pipelines"]["quick"] == file_hash(controller, "quick")
    assert node["pipelines_differing"] == []
    lease = controller.settings.lease_seconds
    assert 0 < node["lease_expires_in_seconds"] <= lease + 1

    await stop_daemon(controller)
    (gone,) = await nodes_of(controller)
    assert gone["id"] == node["id"] and gone["state"] == "left"
    assert gone["lease_expires_in_seconds"] <= 0


async def test_nodes_need_the_token(controller: Controller) -> None:
    async with aiohttp.ClientSession(controller.url) as http, http.get("/api/v1/nodes") as r:
        assert r.status == 401
        assert (await r.json())["error"] is True


async def test_three_daemons_on_postgres_and_the_one_whose_pipeline_differs(
    controller_factory: Callable[..., Controller], pg_url: str
) -> None:
    """Every controller lists the three nodes; the home with its own `slow.toml` has it
    differing (two nodes against one agree on the file); a node stopped is `left`."""
    controllers = [controller_factory(database_url=pg_url) for _ in range(3)]
    odd = controllers[2]
    (odd.settings.pipelines_path / "slow.toml").write_text(OTHERWISE)
    for controller in controllers:
        await start_daemon(controller)
    node_ids = [await node_id_of(c) for c in controllers]
    ids = sorted(node_ids)
    assert len(set(ids)) == 3
    for controller in controllers:
        listed = await nodes_of(controller)
        assert [n["id"] for n in listed] == ids  # by id
        assert all(n["state"] == "live" and n["this_host"] for n in listed)
    by_id = {n["id"]: n for n in await nodes_of(controllers[0])}
    assert by_id[node_ids[2]]["pipelines_differing"] == ["slow"]
    assert by_id[node_ids[2]]["pipelines"]["slow"] == file_hash(odd, "slow")
    for controller, node_id in zip(controllers[:2], node_ids, strict=False):
        node = by_id[node_id]
        assert node["pipelines_differing"] == []
        assert node["pipelines"]["slow"] == file_hash(controller, "slow") != file_hash(odd, "slow")
        assert node["pid"] == daemon_pid(controller)

    await stop_daemon(odd)
    states = {n["id"]: n["state"] for n in await nodes_of(controllers[0])}
    assert states.pop(node_ids[2]) == "left"
    assert set(states.values()) == {"live"}


@pytest.fixture
def proxy(pg_url: str) -> Iterator[PgProxy]:
    """A relay to the test server that the test can cut."""
    with pg_proxy(pg_url) as relay:
        yield relay


async def test_nodes_answer_503_with_the_reason_while_the_store_is_unreachable(
    controller_factory: Callable[..., Controller], proxy: PgProxy
) -> None:
    controller = controller_factory(database_url=proxy.url)
    assert await nodes_of(controller) == []
    proxy.cut()
    try:
        async with (
            aiohttp.ClientSession(controller.url, headers=controller.headers) as http,
            http.get("/api/v1/nodes") as response,
        ):
            body = await response.json()
            assert response.status == 503, body
        assert "PostgreSQL store is unreachable" in body["detail"]
    finally:
        proxy.restore()
    await until(lambda: _answers(controller), what="the nodes once the store is back")


async def _answers(controller: Controller) -> bool:
    async with (
        aiohttp.ClientSession(controller.url, headers=controller.headers) as http,
        http.get("/api/v1/nodes") as response,
    ):
        return response.status == 200
