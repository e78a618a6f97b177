"""The nodes of a store as the controller shows them (`GET /api/v1/nodes`, the dashboard's
Nodes page, the `cronmgr_node_*` gauges): each row of the `nodes` table with how long its
lease still holds, the pipelines whose content differs from the one the live nodes agree
on, and whether it runs on the controller's own host.

A node is counted as live as the nodes count each other: its state is `live` and its lease
has not run out. A daemon killed outright stays `live` in its row until another node
declares it lost; with its lease run out it no longer votes on the pipelines' content.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cronmgr.core.models import Node, NodeState
from cronmgr.core.pipelines.agreement import agreed_pipelines, differing


def is_up(node: Node, now: datetime) -> bool:
    """Live, with a lease that holds at `now`."""
    return node.state is NodeState.LIVE and node.lease_expires_at > now


def lease_seconds_left(node: Node, now: datetime) -> float:
    """Seconds from `now` until the node's lease runs out; negative once it has."""
    return (node.lease_expires_at - now).total_seconds()


def node_reports(nodes: Sequence[Node], now: datetime, host: str) -> list[dict[str, Any]]:
    """Every node as the API answers it, in the order given: its row, then
    `lease_expires_in_seconds`, `pipelines_differing` and `this_host` (`host` is the
    controller's host name)."""
    agreed = agreed_pipelines(node.pipelines for node in nodes if is_up(node, now))
    return [
        {
            **node.as_dict(),
            "lease_expires_in_seconds": lease_seconds_left(node, now),
            "pipelines_differing": differing(node.pipelines, agreed),
            "this_host": node.host == host,
        }
        for node in nodes
    ]
