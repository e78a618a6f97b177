"""`/api/v1/nodes`: every daemon of the store, as its row in the `nodes` table shows it,
with how long its lease still holds and the pipelines it has that differ from the agreed
ones (`cronmgr.observability.nodes`).
"""

from __future__ import annotations

import socket

from aiohttp import web

from cronmgr.controller.api.common import _store
from cronmgr.controller.openapi import Endpoint, Reply, array_of, ref
from cronmgr.controller.responses import json_response
from cronmgr.core.models import utcnow
from cronmgr.observability.nodes import node_reports


async def list_nodes(request: web.Request) -> web.Response:
    """GET /api/v1/nodes: every node of the store, by id (not paged: one per daemon)."""
    nodes = await _store(request).list_nodes()
    # The lease is read against the controller's clock: the nodes' own clocks may differ.
    return json_response(node_reports(nodes, utcnow(), socket.gethostname()))


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "GET",
        "/api/v1/nodes",
        list_nodes,
        "List the nodes of the store (by id)",
        "nodes",
        Reply(200, "Every node of the store, live or not.", array_of(ref("Node"))),
        description=(
            "One node per daemon that uses this store, those that left or were lost too. "
            "`lease_expires_in_seconds` is read against the controller's clock. A "
            "pipeline's agreed content is the hash most live nodes (state `live`, lease not "
            "run out) report; a node listing it in `pipelines_differing` runs none of it."
        ),
    ),
)
