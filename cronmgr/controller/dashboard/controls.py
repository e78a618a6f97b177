"""The daemon's controls on the overview: the start, stop and restart forms, the start
form's pipeline and interval filled in from the last run's or the configured defaults.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cronmgr.controller.control import launch_spec
from cronmgr.controller.dashboard.common import Action, Form, P, act, text
from cronmgr.controller.keys import CONTROL, SETTINGS
from cronmgr.core.errors import InvalidInput
from cronmgr.core.launch import LaunchSpec
from cronmgr.core.specs.queries import StartRequest
from cronmgr.core.specs.validation import validate


async def _launch_spec(request: web.Request, form: Form) -> LaunchSpec:
    """The start form as a launch spec; the last run's or the configured defaults fill in
    (with no pipeline chosen and none loaded, the schedules only)."""
    data: dict[str, Any] = {}
    interval = (text(form, "interval_seconds") or "").strip()
    if interval:
        if not interval.isdigit():
            raise InvalidInput("invalid form: interval_seconds: a whole number of seconds")
        data["interval_seconds"] = int(interval)
    pipeline = (text(form, "pipeline") or "").strip()
    if pipeline:
        data["pipeline"] = pipeline
    body = validate(StartRequest, data, "form")
    control = request.app[CONTROL]
    spec = launch_spec(
        request.app[SETTINGS], control.desired_spec(), body.interval_seconds, body.pipeline
    )
    return await control.resolve(spec, asked=body.pipeline is not None)


def _runs(spec: LaunchSpec) -> str:
    if spec.pipeline is None:
        return "the schedules only (no pipeline is loaded)"
    return f"pipeline {spec.pipeline} every {spec.interval_seconds} s"


async def _start(request: web.Request, form: Form) -> str:
    spec = await _launch_spec(request, form)
    pid = await request.app[CONTROL].start(spec)
    return f"Daemon started (PID: {pid}): {_runs(spec)}"


async def _stop(request: web.Request, form: Form) -> str:
    outcome = await request.app[CONTROL].stop()
    if not outcome.was_running:
        return "Daemon is not running"
    killed = "; killed after the grace period" if outcome.killed else ""
    return f"Daemon stopped (PID: {outcome.pid}{killed})"


async def _restart(request: web.Request, form: Form) -> str:
    # Before the stop, which forgets the last spec; an unknown pipeline stops nothing.
    spec = await _launch_spec(request, form)
    control = request.app[CONTROL]
    await control.stop()
    pid = await control.start(spec)
    return f"Daemon restarted (PID: {pid}): {_runs(spec)}"


DAEMON_ACTIONS: dict[str, Action] = {"start": _start, "stop": _stop, "restart": _restart}


async def daemon_action(request: web.Request) -> web.Response:
    """POST /ui/daemon/{start|stop|restart}: the daemon controls of the overview."""
    return await act(request, DAEMON_ACTIONS[request.match_info["action"]], P + "/")
