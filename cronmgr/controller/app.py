"""The controller's app factory: its parts on the app, the routes of every endpoint, and what
opens and closes with it (the store, the webhooks, the daemon's supervision).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

import aiohttp_jinja2
import jinja2
from aiohttp import web

from cronmgr.controller.api import daemon as daemon_api
from cronmgr.controller.api import incidents as incidents_api
from cronmgr.controller.api import logs as logs_api
from cronmgr.controller.api import meta as meta_api
from cronmgr.controller.api import metrics as metrics_api
from cronmgr.controller.api import nodes as nodes_api
from cronmgr.controller.api import notifications as notifications_api
from cronmgr.controller.api import pipelines as pipelines_api
from cronmgr.controller.api import runs as runs_api
from cronmgr.controller.api import schedules as schedules_api
from cronmgr.controller.api import targets as targets_api
from cronmgr.controller.auth import ensure_token
from cronmgr.controller.control import DaemonControl
from cronmgr.controller.dashboard.routes import add_dashboard
from cronmgr.controller.keys import (
    CONTROL,
    LOCKOUT,
    LOG_STREAMS_CLOSING,
    OPEN_PATHS,
    OPENAPI,
    SETTINGS,
    STORE,
    TOKEN,
)
from cronmgr.controller.lockout import Lockout
from cronmgr.controller.middleware import auth_middleware, error_middleware
from cronmgr.controller.openapi import (
    Endpoint,
    build_document,
)
from cronmgr.core.config import Settings, bundled_path
from cronmgr.core.supervision import spawn
from cronmgr.core.version import __version__
from cronmgr.store import open_store


def all_endpoints() -> tuple[Endpoint, ...]:
    """Every endpoint of the controller: daemon control, logs, meta and /api/v1."""
    return (
        daemon_api.ENDPOINTS
        + logs_api.ENDPOINTS
        + meta_api.ENDPOINTS
        + targets_api.ENDPOINTS
        + schedules_api.ENDPOINTS
        + runs_api.ENDPOINTS
        + pipelines_api.ENDPOINTS
        + notifications_api.ENDPOINTS
        + metrics_api.ENDPOINTS
        + incidents_api.ENDPOINTS
        + nodes_api.ENDPOINTS
    )


def add_routes(app: web.Application, endpoints: Iterable[Endpoint]) -> None:
    """Route every endpoint of the table (GET routes answer HEAD too)."""
    for endpoint in endpoints:
        if endpoint.method == "GET":
            app.router.add_get(endpoint.path, endpoint.handler)
        else:
            app.router.add_route(endpoint.method, endpoint.path, endpoint.handler)


async def store_context(app: web.Application) -> AsyncIterator[None]:
    """The store, open for the life of the app."""
    async with open_store(app[SETTINGS].store_url) as store:
        app[STORE] = store
        yield


async def notifications(app: web.Application) -> AsyncIterator[None]:
    """The controller's webhooks (daemon deaths, test events), for the life of the app."""
    async with app[CONTROL].notifier:
        yield


async def supervision(app: web.Application) -> AsyncIterator[None]:
    """Attach to (or resume) the daemon at start-up and watch it until shutdown."""
    control = app[CONTROL]
    await control.attach()
    task = spawn("daemon supervisor", control.supervise())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(settings: Settings) -> web.Application:
    """The controller application for `settings`."""
    app = web.Application(
        middlewares=[error_middleware, auth_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[CONTROL] = DaemonControl(settings)
    app[LOG_STREAMS_CLOSING] = asyncio.Event()
    app.on_shutdown.append(logs_api.close_log_streams)
    token = ensure_token(settings)
    if token is not None:
        app[TOKEN] = token
    app[LOCKOUT] = Lockout(limit=settings.lockout_failures)
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(bundled_path("templates")),
        autoescape=jinja2.select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    endpoints = all_endpoints()
    add_routes(app, endpoints)
    # The dashboard's HTML pages and forms are not API: they stay out of the endpoint
    # table and the OpenAPI document.
    add_dashboard(app)
    app[OPENAPI] = build_document(endpoints, version=__version__, open_paths=OPEN_PATHS)
    app.cleanup_ctx.append(store_context)
    app.cleanup_ctx.append(notifications)  # before supervision: it outlives the watching
    app.cleanup_ctx.append(supervision)
    return app
