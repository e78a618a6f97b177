"""Nodes: the daemons that share one store, each holding a lease that it renews.

A node joins with a row of its own (its id kept across restarts of the same home), renews
its lease with every heartbeat and learns in the same transaction which nodes are live.
One whose lease ran out is declared lost by whichever node sees it first (`expire_nodes`),
which then fails the runs it left and frees the slots it had claimed (`fail_node_runs`).
Each of these writes is a transaction of its own on the store's connection, as the
definitions' are: they are not run writes, and never wait in the batcher behind them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
import structlog

from cronmgr.core.errors import Conflict
from cronmgr.core.models import Node, NodeState
from cronmgr.store.readable import unreadable_node
from cronmgr.store.relational.columns import Row, _json, _members, _required_dt, _ts
from cronmgr.store.relational.connection import RelationalConnection

log = structlog.get_logger("cronmgr.store")

_node_state = _members(NodeState)


class NodesMixin(RelationalConnection):
    """The nodes sharing the store: joining, leases, departures, and the runs of the gone."""

    async def join_node(self, node: Node) -> None:
        """Insert the node's row, or replace the row of its id (live again, with the new
        host, pid, version, times and pipelines). Conflict when a live daemon on another
        host holds the id with a lease unexpired at `node.heartbeat_at`."""
        async with self._transaction("join_node"):
            if await self._rows("join_node", _node_params(node)):
                return
            # The upsert refused: the row that refused is still there (locked, or under the
            # write lock), so the message can name its holder.
            rows = await self._rows("get_node", {"id": node.id})
            holder = node_from_row(rows[0])
            raise Conflict(
                f"node id {node.id!r} is held by a live daemon on host {holder.host!r} until"
                f" {holder.lease_expires_at.isoformat()}: give this daemon another node_id"
            )

    async def renew_lease(self, node: Node) -> list[Node] | None:
        """Renew the lease of `node` (heartbeat, lease, pipelines, counts) while it is live,
        and return every node live at `node.heartbeat_at` by id, this one included; None
        when it is no longer live (declared lost, or it left), in one transaction."""
        params = _node_params(node)
        async with self._transaction("renew_lease"):
            if not await self._run("renew_lease", params):
                return None
            rows = await self._rows("live_nodes", {"now": params["heartbeat_at"]})
        return [node_from_row(row) for row in rows]

    async def expire_nodes(self, now: datetime) -> list[str]:
        """Mark every live node whose lease ran out by `now` as lost; their ids, in order.
        Of several callers at once, each id is returned to one of them."""
        async with self._transaction("expire_nodes"):
            rows = await self._rows("expire_nodes", {"now": _ts(now)})
        return sorted(row["id"] for row in rows)

    async def fail_node_runs(
        self, node_id: str, now: datetime, reason: str, claimed_reason: str
    ) -> int:
        """End the runs of a gone node: running ones fail with `reason`, slots it claimed
        ahead that were due by `now` with `claimed_reason`, and its claims of later slots
        are deleted, so that the node taking over their schedules fires them. Pending
        manual runs stay for any node to pick up. Returns how many runs failed."""
        moment = _ts(now)
        failed = {"node_id": node_id, "now": moment, "reason": reason}
        async with self._transaction("fail_node_runs"):
            count = await self._run("fail_node_runs", {**failed, "claimed_reason": claimed_reason})
            await self._run("free_node_claims", {"node_id": node_id, "now": moment})
        return count

    async def leave_node(self, node_id: str, now: datetime) -> None:
        """Record a clean stop: state left, its lease ended at `now`, so that the others
        take over its schedules at once."""
        await self._write("leave_node", {"id": node_id, "now": _ts(now)})

    async def list_nodes(self) -> list[Node]:
        """Every node the store knows of, by id; a row that can't be mapped comes back with
        what of it can be read."""
        return [node_from_row(row) for row in await self._read("list_nodes", {})]

    async def prune_nodes(self, before: datetime) -> int:
        """Delete the rows of nodes that are not live and last heard of before `before`;
        how many went."""
        return await self._write("prune_nodes", {"before": _ts(before)})


def node_from_row(row: Row) -> Node:
    """A Node from a `nodes` row; one that can't be mapped keeps what of it can be read
    (see readable.unreadable_node), and the reason is logged."""
    try:
        return _mapped_node(row)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        values = dict(row)
        log.warning("node_row_unreadable", node_id=values.get("id"), error=f"{exc!r}")
        return unreadable_node(values)


def _mapped_node(row: Row) -> Node:
    return Node(
        id=row["id"],
        host=row["host"],
        pid=row["pid"],
        version=row["version"],
        started_at=_required_dt(row["started_at"]),
        heartbeat_at=_required_dt(row["heartbeat_at"]),
        lease_expires_at=_required_dt(row["lease_expires_at"]),
        state=_node_state(row["state"]),
        pipelines=_pipelines(row["pipelines"]),
        schedules_owned=row["schedules_owned"],
        runs_in_flight=row["runs_in_flight"],
    )


def _pipelines(text: str) -> Mapping[str, str]:
    pipelines = orjson.loads(text)
    if not isinstance(pipelines, dict):
        raise TypeError(f"pipelines: expected a JSON object, found {type(pipelines).__name__}")
    return pipelines


def _node_params(node: Node) -> dict[str, Any]:
    return {
        "id": node.id,
        "host": node.host,
        "pid": node.pid,
        "version": node.version,
        "started_at": _ts(node.started_at),
        "heartbeat_at": _ts(node.heartbeat_at),
        "lease_expires_at": _ts(node.lease_expires_at),
        "state": node.state.value,
        "pipelines": _json(dict(node.pipelines)),
        "schedules_owned": node.schedules_owned,
        "runs_in_flight": node.runs_in_flight,
    }
