"""`/api/cron/*`: start, stop, restart, reload and status, as the seeds' clients call them."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from cronmgr.controller.control import launch_spec
from cronmgr.controller.keys import (
    CONTROL,
    SETTINGS,
)
from cronmgr.controller.openapi import (
    Endpoint,
    Reply,
    ref,
)
from cronmgr.controller.responses import (
    json_response,
    read_body,
    timestamp,
)
from cronmgr.core.errors import (
    NotFound,
)
from cronmgr.core.launch import LaunchSpec
from cronmgr.core.specs.queries import StartRequest, start_request
from cronmgr.core.version import __version__


async def _spec(request: web.Request, body: StartRequest) -> LaunchSpec:
    # The rule the dashboard's controls use too: asked, else the last start's, else defaults;
    # with no pipeline asked for and none loaded, the schedules only.
    control = request.app[CONTROL]
    spec = launch_spec(
        request.app[SETTINGS], control.desired_spec(), body.interval_seconds, body.pipeline
    )
    return await control.resolve(spec, asked=body.pipeline is not None)


async def start_daemon(request: web.Request) -> web.Response:
    """POST /api/cron/start: launch the daemon (see `launch_spec`); 409 when it runs already."""
    body = start_request(await read_body(request))
    spec = await _spec(request, body)
    pid = await request.app[CONTROL].start(spec)
    return json_response(_started(request, spec, pid, body))


def _started(
    request: web.Request, spec: LaunchSpec, pid: int, body: StartRequest
) -> dict[str, Any]:
    if spec.pipeline is None:
        message = f"Daemon started successfully, running the schedules only (PID: {pid})"
    else:
        message = (
            f"Daemon started successfully with interval: {spec.interval_seconds} seconds "
            f"(PID: {pid})"
        )
    return {
        "success": True,
        "message": message,
        "timestamp": timestamp(),
        "pid": pid,
        "interval_seconds": spec.interval_seconds if spec.pipeline is not None else None,
        "pipeline": spec.pipeline,
        "schedules_only": spec.pipeline is None,
        "warnings": _start_warnings(request, spec, body),
    }


def _start_warnings(request: web.Request, spec: LaunchSpec, body: StartRequest) -> list[str]:
    if spec.pipeline is not None or body.interval_seconds is None:
        return []
    where = request.app[SETTINGS].pipelines_path
    return [
        f"no pipeline is loaded from {where}, so interval_seconds {body.interval_seconds} "
        "has nothing to run: the daemon runs the schedules only"
    ]


async def stop_daemon(request: web.Request) -> web.Response:
    """POST /api/cron/stop: stop the daemon; fine when it is not running."""
    outcome = await request.app[CONTROL].stop()
    if not outcome.was_running:
        message = "Daemon is not running"
    elif outcome.killed:
        message = f"Daemon stopped (PID: {outcome.pid}; killed after the grace period)"
    else:
        message = "Daemon stopped successfully"
    return json_response(
        {"success": True, "message": message, "timestamp": timestamp(), "pid": outcome.pid}
    )


async def restart_daemon(request: web.Request) -> web.Response:
    """POST /api/cron/restart: stop, then start with the given or the last settings."""
    body = start_request(await read_body(request))
    control = request.app[CONTROL]
    # Before the stop, which forgets the last spec; and a restart that can't start (its
    # pipeline unknown) stops nothing.
    spec = await _spec(request, body)
    await control.stop()
    pid = await control.start(spec)
    data = _started(request, spec, pid, body)
    data["message"] = data["message"].replace("started", "restarted", 1)
    return json_response(data)


async def reload_daemon(request: web.Request) -> web.Response:
    """POST /api/cron/reload: SIGHUP the daemon (re-read definitions, reopen the log)."""
    if not request.app[CONTROL].reload():
        raise NotFound("Daemon is not running; nothing to reload")
    return json_response({"success": True, "message": "Reload signalled", "timestamp": timestamp()})


async def daemon_status(request: web.Request) -> web.Response:
    """GET /api/cron/status: the seed's fields plus process and supervision details."""
    body = await asyncio.to_thread(request.app[CONTROL].status)
    body["version"] = __version__
    body["timestamp"] = timestamp()
    return json_response(body)


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/api/cron/start",
        start_daemon,
        "Start the daemon",
        "daemon",
        Reply(200, "Started; the message ends with (PID: n).", ref("DaemonStarted")),
        description=(
            "Schedules the pipeline every interval_seconds (default 120, at least 10), "
            "besides the schedules. Without a pipeline asked for and none loaded, the daemon "
            "runs the schedules only (`schedules_only`: true; `warnings` says when an "
            "interval_seconds given was not used). An interval_seconds below 10 answers 400, "
            "as the Pipeline Cron Manager API documents it; other invalid fields 422."
        ),
        body=StartRequest,
        body_required=False,
        errors=(409, 503),
    ),
    Endpoint(
        "POST",
        "/api/cron/stop",
        stop_daemon,
        "Stop the daemon (idempotent)",
        "daemon",
        Reply(200, "Stopped, or it was not running.", ref("DaemonStopped")),
    ),
    Endpoint(
        "POST",
        "/api/cron/restart",
        restart_daemon,
        "Stop, then start (with the given or the last settings)",
        "daemon",
        Reply(200, "Restarted.", ref("DaemonStarted")),
        description="The body as for start (an interval_seconds below 10 answers 400).",
        body=StartRequest,
        body_required=False,
        errors=(503,),
    ),
    Endpoint(
        "POST",
        "/api/cron/reload",
        reload_daemon,
        "Re-read pipelines and definitions, reopen the log (SIGHUP)",
        "daemon",
        Reply(200, "Signalled.", ref("Message")),
        description="404 when the daemon is not running.",
        errors=(404,),
    ),
    Endpoint(
        "GET",
        "/api/cron/status",
        daemon_status,
        "Daemon state, pid, uptime, cpu, memory, supervision",
        "daemon",
        Reply(200, "The status.", ref("DaemonStatus")),
    ),
)
