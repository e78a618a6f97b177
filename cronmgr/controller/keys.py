"""The keys under which the controller keeps its shared parts on the app.

A leaf of the controller: the app factory sets them, the resource handlers and the
dashboard read them, and none of those has to import another to find them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from cronmgr.controller.control import DaemonControl
from cronmgr.controller.lockout import Lockout
from cronmgr.core.config import Settings
from cronmgr.store import Store

SETTINGS = web.AppKey("settings", Settings)
CONTROL = web.AppKey("control", DaemonControl)
TOKEN = web.AppKey("token", str)
LOCKOUT = web.AppKey("lockout", Lockout)
"""Wrong tokens per client address, bearer header and login form alike."""
# A Protocol cannot be passed as the key's type at run time; the annotation carries it.
STORE: web.AppKey[Store] = web.AppKey("store")
OPENAPI = web.AppKey("openapi", dict[str, Any])
LOG_STREAMS_CLOSING = web.AppKey("log_streams_closing", asyncio.Event)
# Readable without the token: health checks for probes, and the pages that describe the
# API (the landing page, the OpenAPI document, its rendering). None of them holds state
# or secrets, and a client needs the description before it has a token.
OPEN_PATHS = frozenset({"/", "/health", "/api/v1/health", "/openapi.json", "/docs", "/redoc"})
# The dashboard's pages: a browser cannot send the bearer token, so they pass this check
# and the dashboard guards them with its own login and session cookie instead.
DASHBOARD_PREFIX = "/ui"
