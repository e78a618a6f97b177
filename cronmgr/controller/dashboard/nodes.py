"""The nodes page: every daemon of the store with its state, how long its lease still
holds, what it runs, and the content hash of each of its pipelines, those that differ
from the agreed content marked.
"""

from __future__ import annotations

import socket
from typing import Any

from aiohttp import web

from cronmgr.controller.dashboard.common import render
from cronmgr.controller.keys import STORE
from cronmgr.core.models import utcnow
from cronmgr.observability.nodes import is_up, node_reports

HASH_SHOWN = 8
"""Hex digits of a pipeline's content hash the table shows (the whole one on hover)."""


def _pipelines(report: dict[str, Any]) -> list[dict[str, Any]]:
    differing = set(report["pipelines_differing"])
    return [
        {"name": name, "hash": digest, "short": digest[:HASH_SHOWN], "differs": name in differing}
        for name, digest in sorted(report["pipelines"].items())
    ]


async def nodes_page(request: web.Request) -> web.Response:
    """GET /ui/nodes: every node of the store, as `GET /api/v1/nodes` answers."""
    nodes, now = await request.app[STORE].list_nodes(), utcnow()
    reports = node_reports(nodes, now, socket.gethostname())
    rows = [
        {**report, "up": is_up(node, now), "pipeline_rows": _pipelines(report)}
        for node, report in zip(nodes, reports, strict=True)
    ]
    return render(request, "ui_nodes.html", {"rows": rows})
