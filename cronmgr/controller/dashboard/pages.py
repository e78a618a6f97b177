"""The web dashboard: pages under `/ui`, rendered from `templates/` by aiohttp-jinja2.

Each page reads the store and the daemon's status in-process, never over HTTP to the
controller itself, and is complete without JavaScript: every change is a form that POSTs
and is answered with a redirect back to a page (Post/Redirect/Get), which shows what came
of it. The one small script served beside the stylesheet only refreshes the live parts of
a page and follows the log over server-sent events.

Security, in one place:

- every page but the login form needs a session (`cronmgr.controller.sessions`): the API token,
  typed once into the login form, buys a cookie that is HttpOnly, SameSite=Strict and
  confined to `/ui`; the bearer-token API is untouched by it;
- every state-changing request carries the session's CSRF token (a form field, or the
  `X-CSRF-Token` header) and is refused with 403 without it; the login form carries one
  too (a double-submit cookie, as there is no session yet);
- templates autoescape everything, target headers and URLs are shown redacted, and the
  token is never put into a page;
- every answer forbids framing and any script or style that the controller does not serve
  itself (Content-Security-Policy), and pages are not cached.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote, urlencode

import aiohttp_jinja2
import orjson
import structlog
from aiohttp import web
from multidict import MultiDictProxy

from cronmgr.controller.api.logs import stream_logs
from cronmgr.controller.api.pipelines import read_pipelines, request_pipeline_run
from cronmgr.controller.control import launch_spec
from cronmgr.controller.dashboard import format as ui_format
from cronmgr.controller.keys import CONTROL, DASHBOARD_PREFIX, LOCKOUT, SETTINGS, STORE, TOKEN
from cronmgr.controller.responses import add_retry_after
from cronmgr.controller.sessions import Session, SessionKeeper, tokens_match
from cronmgr.core.config import bundled_path
from cronmgr.core.errors import (
    Conflict,
    CronmgrError,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyRequests,
)
from cronmgr.core.launch import LaunchSpec
from cronmgr.core.models import (
    Run,
    RunStatus,
    Schedule,
    ScheduleStatus,
    pipeline_job,
    utcnow,
)
from cronmgr.core.pipelines.pipeline import Pipeline
from cronmgr.core.secret_refs import redact
from cronmgr.core.specs.queries import FollowQuery, StartRequest
from cronmgr.core.specs.validation import validate, validate_query
from cronmgr.core.version import __version__
from cronmgr.observability.log_cursor import LEVELS, LogFilter
from cronmgr.observability.log_pages import read_page
from cronmgr.store import Store
from cronmgr.store.pipeline_sync import file_schedule_id
from cronmgr.store.records import IncidentStatus

log = structlog.get_logger("cronmgr.dashboard")

P = DASHBOARD_PREFIX
SESSIONS = web.AppKey("dashboard_sessions", SessionKeeper)
SESSION = web.RequestKey("dashboard_session", Session)

SESSION_COOKIE = "cronmgr_session"
LOGIN_COOKIE = "cronmgr_login"
FLASH_COOKIE = "cronmgr_flash"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PAGE_SIZE = 50
"""Rows of one page of schedules, runs, targets or incidents."""
SPARK_RUNS = 20
"""Runs a schedule's sparkline shows."""
LOG_LINES = 200
"""Log lines the log page starts with."""

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # Pages show live state and are only for the logged-in: never from a cache.
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Form = MultiDictProxy[Any]


# --- guards -------------------------------------------------------------------------------


def public(handler: Handler) -> Handler:
    """A dashboard handler with HTML error pages and the security headers."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except CronmgrError as exc:
            response = render(request, "ui_error.html", {"error": exc}, status=exc.status)
        if not response.prepared:  # an event stream has sent its headers already
            response.headers.update(SECURITY_HEADERS)
        return response

    return wrapped


def guarded(handler: Handler) -> Handler:
    """A `public` handler that needs a session, and its CSRF token unless it only reads."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        session = request.app[SESSIONS].check(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return to_login(request)
        request[SESSION] = session
        if request.method not in SAFE_METHODS:
            await check_csrf(request, session)
        return await handler(request)

    return public(wrapped)


async def check_csrf(request: web.Request, session: Session) -> None:
    """403 unless the request carries the session's CSRF token (header or form field)."""
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        value = (await request.post()).get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not request.app[SESSIONS].csrf_ok(session, given):
        log.warning("dashboard_csrf_refused", method=request.method, path=request.path)
        raise Forbidden(
            "this request carries no valid CSRF token, so it was refused: reload the page "
            "and submit the form again"
        )


def to_login(request: web.Request) -> web.Response:
    """A redirect to the login form that comes back here afterwards."""
    back = request.path_qs if request.method in SAFE_METHODS else P + "/"
    return see_other(f"{P}/login?{urlencode({'next': back})}")


def see_other(location: str) -> web.Response:
    """303: go (and GET) there."""
    return web.Response(status=303, headers={"Location": location})


def local_path(value: Any, default: str = P + "/") -> str:
    """`value` when it is a dashboard path, else `default`: no redirect leaves the site."""
    if isinstance(value, str) and value.startswith(P + "/") and "\\" not in value:
        return value
    return default


# --- rendering ------------------------------------------------------------------------------


def render(
    request: web.Request, template: str, context: Mapping[str, Any], status: int = 200
) -> web.Response:
    """A page from `templates/`, with what every page shows (session, flash, version)."""
    session = request.get(SESSION)
    flash = read_flash(request)
    common = {
        "P": P,
        "version": __version__,
        "session": session,
        "csrf_token": session.csrf_token if session else "",
        "csrf_field": CSRF_FIELD,
        "flash": flash,
        "path": request.path,
        "here": request.path_qs,
        "now": utcnow(),
    }
    response = aiohttp_jinja2.render_template(
        template, request, {**common, **context}, status=status
    )
    if flash:
        response.del_cookie(FLASH_COOKIE, path=P)
    return response


def read_flash(request: web.Request) -> tuple[str, str] | None:
    """The message an action left for the next page: (ok | error, text)."""
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    kind, _, text = unquote(raw).partition(":")
    return ("error" if kind == "error" else "ok", text)


def with_flash(location: str, kind: str, text: str) -> web.Response:
    """A redirect to `location` that shows `text` there once."""
    response = see_other(location)
    # A cookie, not a query parameter: a link from elsewhere cannot put words on a page.
    response.set_cookie(
        FLASH_COOKIE,
        quote(f"{kind}:{text[:500]}"),
        path=P,
        max_age=60,
        httponly=True,
        samesite="Strict",
    )
    return response


Action = Callable[[web.Request, Form], Awaitable[str]]


async def act(request: web.Request, action: Action, default_back: str) -> web.Response:
    """Run a form's action; back to the page it came from with what came of it."""
    form = await request.post()
    back = local_path(form.get("back"), default_back)
    try:
        message = await action(request, form)
    except CronmgrError as exc:
        log.info("dashboard_action_refused", path=request.path, detail=exc.detail)
        return with_flash(back, "error", exc.detail)
    log.info("dashboard_action", path=request.path, message=message)
    return with_flash(back, "ok", message)


# --- login ------------------------------------------------------------------------------------


def _cookie_flags(request: web.Request) -> dict[str, Any]:
    return {"httponly": True, "samesite": "Strict", "secure": request.secure}


def _login_page(
    request: web.Request, nonce: str, back: Any, status: int = 200, **extra: Any
) -> web.Response:
    context = {"login_csrf": nonce, "next": local_path(back), "auth": TOKEN in request.app}
    context.update(extra)
    response = render(request, "ui_login.html", context, status=status)
    response.set_cookie(
        LOGIN_COOKIE, nonce, path=P + "/login", max_age=3600, **_cookie_flags(request)
    )
    return response


async def login_form(request: web.Request) -> web.Response:
    """GET /ui/login: the form that trades the API token for a session."""
    if request.app[SESSIONS].check(request.cookies.get(SESSION_COOKIE)):
        return see_other(local_path(request.query.get("next")))
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    return _login_page(request, nonce, request.query.get("next"))


async def login(request: web.Request) -> web.Response:
    """POST /ui/login: a session cookie for the right token; 401 and the form again else."""
    form = await request.post()
    nonce = request.cookies.get(LOGIN_COOKIE)
    if not nonce or not tokens_match(nonce, _text(form, CSRF_FIELD)):
        raise Forbidden(
            "the login form's CSRF token is missing or stale: open the login page again"
        )
    token = request.app.get(TOKEN)
    if token is not None:
        lockout = request.app[LOCKOUT]
        try:
            lockout.check(request.remote)
        except TooManyRequests as exc:
            return _refused_login(request, nonce, form.get("next"), exc)
        if not tokens_match(token, _text(form, "token")):
            lockout.failed(request.remote)
            log.warning("dashboard_login_failed", remote=request.remote)
            error = "That is not the API token."
            return _login_page(request, nonce, form.get("next"), status=401, error=error)
    keeper = request.app[SESSIONS]
    _, cookie = keeper.issue()
    log.info("dashboard_login", remote=request.remote)
    response = see_other(local_path(_text(form, "next")))
    flags = _cookie_flags(request)
    response.set_cookie(
        SESSION_COOKIE, cookie, path=P, max_age=int(keeper.lifetime_seconds), **flags
    )
    response.del_cookie(LOGIN_COOKIE, path=P + "/login")
    return response


def _refused_login(
    request: web.Request, nonce: str, back: object, refusal: TooManyRequests
) -> web.Response:
    """The form again, 429: this address sent too many wrong tokens of late."""
    log.warning("dashboard_login_refused", remote=request.remote)
    response = _login_page(request, nonce, back, status=429, error=refusal.detail)
    add_retry_after(response, refusal)
    return response


async def logout(request: web.Request) -> web.Response:
    """POST /ui/logout: end the session; its cookie is refused from now on."""
    request.app[SESSIONS].revoke(request[SESSION])
    response = see_other(P + "/login")
    response.del_cookie(SESSION_COOKIE, path=P)
    return response


def _text(form: Form, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


async def to_overview(request: web.Request) -> web.Response:
    """GET /ui: the overview lives at /ui/."""
    return see_other(P + "/")


# --- names of what runs -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Label:
    """How a page names something, and where it links to (None: nowhere)."""

    text: str
    href: str | None = None


class Names:
    """Readable names of jobs (`pipeline:x`, `target:<id>`) and schedules, looked up once."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._targets: dict[str, str | None] = {}
        self._schedules: dict[str, str | None] = {}

    async def job(self, job: str) -> Label:
        """A run's job as `pipeline x` or `target Name`, linked to its page."""
        kind, _, ref = job.partition(":")
        if kind == "pipeline":
            return Label(f"pipeline {ref}", f"{P}/pipelines/{quote(ref, safe='')}")
        if kind == "target":
            name = await self._target(ref)
            return Label(f"target {name or ref}", f"{P}/targets#target-{ref}")
        return Label(job)

    async def schedule(self, schedule_id: str | None) -> Label | None:
        """A schedule's name, linked to the schedules page; None for a manual run."""
        if schedule_id is None:
            return None
        if schedule_id not in self._schedules:
            try:
                self._schedules[schedule_id] = (await self._store.get_schedule(schedule_id)).name
            except NotFound:
                self._schedules[schedule_id] = None
        name = self._schedules[schedule_id]
        return Label(name or schedule_id, f"{P}/schedules#schedule-{schedule_id}")

    async def _target(self, target_id: str) -> str | None:
        if target_id not in self._targets:
            try:
                self._targets[target_id] = (await self._store.get_target(target_id)).name
            except NotFound:
                self._targets[target_id] = None
        return self._targets[target_id]


@dataclass(frozen=True, slots=True)
class RunRow:
    """A run as a table row shows it."""

    run: Run
    job: Label
    schedule: Label | None
    seconds: float | None


def run_seconds(run: Run) -> float | None:
    """How long a run took (or has been taking); None before it started."""
    if run.started_at is None:
        return None
    return max(0.0, ((run.finished_at or utcnow()) - run.started_at).total_seconds())


async def run_rows(names: Names, runs: list[Run]) -> list[RunRow]:
    """Runs with their job's and schedule's names."""
    return [
        RunRow(
            run, await names.job(run.job), await names.schedule(run.schedule_id), run_seconds(run)
        )
        for run in runs
    ]


# --- sparklines -------------------------------------------------------------------------------

SPARK_WIDTH = 120.0
SPARK_HEIGHT = 24.0
SPARK_MIN_BAR = 3.0


@dataclass(frozen=True, slots=True)
class Bar:
    """One run in a sparkline: where its bar stands, how tall (its duration), its status."""

    x: float
    width: float
    height: float
    status: str
    title: str


def sparkline(runs: list[Run]) -> list[Bar]:
    """Bars for `runs` (given newest first), oldest on the left, height by duration."""
    ordered = list(reversed(runs[:SPARK_RUNS]))
    seconds = [run_seconds(run) or 0.0 for run in ordered]
    longest = max(seconds, default=0.0) or 1.0
    step = SPARK_WIDTH / SPARK_RUNS
    # Right-aligned: the newest run is always at the right edge, however few there are.
    first = SPARK_RUNS - len(ordered)
    return [
        Bar(
            x=(first + index) * step,
            width=step * 0.8,
            height=SPARK_MIN_BAR + (SPARK_HEIGHT - SPARK_MIN_BAR) * took / longest,
            status=run.status.value,
            title=f"{run.status.value}, {took:.3g} s, {run.scheduled_for:%Y-%m-%d %H:%M:%S} UTC",
        )
        for index, (run, took) in enumerate(zip(ordered, seconds, strict=True))
    ]


# --- overview ---------------------------------------------------------------------------------


async def _next_runs(names: Names, planned: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "at": datetime.fromisoformat(item["at"]),
            "job": await names.job(item["job"]),
            "schedule": await names.schedule(item.get("schedule_id")),
        }
        for item in planned
    ]


async def overview(request: web.Request) -> web.Response:
    """GET /ui/: the daemon (state, process, supervision, controls), what runs next, incidents."""
    control, settings, store = request.app[CONTROL], request.app[SETTINGS], request.app[STORE]
    status = await asyncio.to_thread(control.status)
    names = Names(store)
    start = launch_spec(settings, control.desired_spec())  # what a bare Start would run
    context = {
        "status": status,
        "pipelines": sorted(p.name for p in await read_pipelines(request)),
        "start_pipeline": start.pipeline,
        "start_interval": start.interval_seconds,
        "next_runs": await _next_runs(names, status.get("next_runs", [])),
        "recent": await run_rows(names, await store.list_runs(limit=10)),
        "incidents": await _incident_rows(store, names, IncidentStatus.OPEN, 10, 0),
    }
    return render(request, "ui_overview.html", context)


def _launch_spec(request: web.Request, form: Form) -> LaunchSpec:
    """The start form as a launch spec; the last run's or the configured defaults fill in."""
    data: dict[str, Any] = {}
    interval = (_text(form, "interval_seconds") or "").strip()
    if interval:
        if not interval.isdigit():
            raise InvalidInput("invalid form: interval_seconds: a whole number of seconds")
        data["interval_seconds"] = int(interval)
    pipeline = (_text(form, "pipeline") or "").strip()
    if pipeline:
        data["pipeline"] = pipeline
    body = validate(StartRequest, data, "form")
    last = request.app[CONTROL].desired_spec()
    return launch_spec(request.app[SETTINGS], last, body.interval_seconds, body.pipeline)


async def _start(request: web.Request, form: Form) -> str:
    spec = _launch_spec(request, form)
    pid = await request.app[CONTROL].start(spec)
    return f"Daemon started (PID: {pid}): pipeline {spec.pipeline} every {spec.interval_seconds} s"


async def _stop(request: web.Request, form: Form) -> str:
    outcome = await request.app[CONTROL].stop()
    if not outcome.was_running:
        return "Daemon is not running"
    killed = "; killed after the grace period" if outcome.killed else ""
    return f"Daemon stopped (PID: {outcome.pid}{killed})"


async def _restart(request: web.Request, form: Form) -> str:
    spec = _launch_spec(request, form)  # before the stop, which forgets the last spec
    control = request.app[CONTROL]
    await control.check(spec)
    await control.stop()
    pid = await control.start(spec)
    return (
        f"Daemon restarted (PID: {pid}): pipeline {spec.pipeline} every {spec.interval_seconds} s"
    )


DAEMON_ACTIONS: dict[str, Action] = {"start": _start, "stop": _stop, "restart": _restart}


async def daemon_action(request: web.Request) -> web.Response:
    """POST /ui/daemon/{start|stop|restart}: the daemon controls of the overview."""
    return await act(request, DAEMON_ACTIONS[request.match_info["action"]], P + "/")


# --- schedules --------------------------------------------------------------------------------


def _offset(request: web.Request) -> int:
    text = request.query.get("offset", "0")
    return int(text) if text.isdigit() else 0


def paging(request: web.Request, offset: int, found: int) -> dict[str, str | None]:
    """Links to the previous and the next page (None where there is none)."""

    def link(to: int) -> str:
        return request.rel_url.update_query(offset=to).path_qs

    return {
        "previous": link(max(0, offset - PAGE_SIZE)) if offset > 0 else None,
        "next": link(offset + PAGE_SIZE) if found > PAGE_SIZE else None,
    }


async def _schedule_row(store: Store, names: Names, schedule: Schedule) -> dict[str, Any]:
    runs = await store.list_runs(schedule_id=schedule.id, limit=SPARK_RUNS)
    return {
        "schedule": schedule,
        "what": await names.job(schedule.job),
        "last": runs[0] if runs else None,
        "bars": sparkline(runs),
        "succeeded": sum(run.status is RunStatus.SUCCEEDED for run in runs),
        "counted": len(runs),
    }


async def schedules_page(request: web.Request) -> web.Response:
    """GET /ui/schedules: status, next run, last result and a sparkline of each schedule."""
    store, offset = request.app[STORE], _offset(request)
    found = await store.list_schedules(limit=PAGE_SIZE + 1, offset=offset)
    names = Names(store)
    rows = [await _schedule_row(store, names, s) for s in found[:PAGE_SIZE]]
    context = {
        "rows": rows,
        "paging": paging(request, offset, len(found)),
        "spark": {"width": SPARK_WIDTH, "height": SPARK_HEIGHT},
    }
    return render(request, "ui_schedules.html", context)


async def _pause(request: web.Request, form: Form) -> str:
    store = request.app[STORE]
    schedule = await store.get_schedule(request.match_info["id"])
    if schedule.status is ScheduleStatus.COMPLETED:
        raise Conflict(f"schedule {schedule.name!r} is completed; there is nothing to pause")
    await store.set_schedule_status(schedule.id, ScheduleStatus.PAUSED, "paused")
    request.app[CONTROL].definitions_changed()
    return f"Schedule {schedule.name} paused"


async def _resume(request: web.Request, form: Form) -> str:
    store = request.app[STORE]
    schedule = await store.get_schedule(request.match_info["id"])
    await store.set_schedule_status(schedule.id, ScheduleStatus.ACTIVE)
    request.app[CONTROL].definitions_changed()
    return f"Schedule {schedule.name} resumed"


SCHEDULE_ACTIONS: dict[str, Action] = {"pause": _pause, "resume": _resume}


async def schedule_action(request: web.Request) -> web.Response:
    """POST /ui/schedules/{id}/{pause|resume}."""
    action = SCHEDULE_ACTIONS[request.match_info["action"]]
    return await act(request, action, P + "/schedules")


# --- runs -------------------------------------------------------------------------------------


def _run_status(request: web.Request) -> RunStatus | None:
    try:
        return RunStatus(request.query["status"])
    except (KeyError, ValueError):
        return None


async def runs_page(request: web.Request) -> web.Response:
    """GET /ui/runs: runs, newest first, by status and schedule."""
    store, offset, status = request.app[STORE], _offset(request), _run_status(request)
    schedule_id = request.query.get("schedule_id") or None
    found = await store.list_runs(
        status=status, schedule_id=schedule_id, limit=PAGE_SIZE + 1, offset=offset
    )
    names = Names(store)
    context = {
        "rows": await run_rows(names, found[:PAGE_SIZE]),
        "paging": paging(request, offset, len(found)),
        "statuses": [s.value for s in RunStatus],
        "status": status.value if status else "",
        "schedule_id": schedule_id or "",
        "schedule": await names.schedule(schedule_id),
    }
    return render(request, "ui_runs.html", context)


def attempts_by_step(run: Run) -> list[dict[str, Any]]:
    """The run's attempt rows as one entry per step, the last attempt deciding its status."""
    steps: dict[int, dict[str, Any]] = {}
    for result in run.steps:
        step = steps.setdefault(result.position, {"name": result.step, "attempts": []})
        step["attempts"].append(result)
        step["status"] = result.status.value
    return [steps[position] for position in sorted(steps)]


async def run_page(request: web.Request) -> web.Response:
    """GET /ui/runs/{id}: the run, its steps and every attempt with its output excerpt."""
    store = request.app[STORE]
    run = await store.get_run(request.match_info["id"])
    names = Names(store)
    (row,) = await run_rows(names, [run])
    context = {"row": row, "run": run, "steps": attempts_by_step(run)}
    return render(request, "ui_run.html", context)


# --- pipelines --------------------------------------------------------------------------------


async def _pipeline_row(store: Store, pipeline: Pipeline) -> dict[str, Any]:
    schedule = None
    if pipeline.schedule is not None:
        try:
            schedule = await store.get_schedule(file_schedule_id(pipeline.name))
        except NotFound:
            schedule = None  # the daemon has not synced the file yet
    runs = await store.list_runs(job=pipeline_job(pipeline.name), limit=10)
    return {"pipeline": pipeline, "schedule": schedule, "runs": runs}


async def pipelines_page(request: web.Request) -> web.Response:
    """GET /ui/pipelines: every pipeline with its schedule and last run; the broken files."""
    store, found = request.app[STORE], await read_pipelines(request)
    rows = [await _pipeline_row(store, p) for p in sorted(found, key=lambda p: p.name)]
    context = {"rows": rows, "errors": found.errors}
    return render(request, "ui_pipelines.html", context)


async def pipeline_page(request: web.Request) -> web.Response:
    """GET /ui/pipelines/{name}: steps, schedule, recent runs, run now."""
    store = request.app[STORE]
    pipeline = (await read_pipelines(request)).get(request.match_info["name"])
    row = await _pipeline_row(store, pipeline)
    names = Names(store)
    context = {**row, "recent": await run_rows(names, row["runs"])}
    return render(request, "ui_pipeline.html", context)


async def _run_now(request: web.Request, form: Form) -> str:
    pipeline = (await read_pipelines(request)).get(request.match_info["name"])
    store, control = request.app[STORE], request.app[CONTROL]
    run = await request_pipeline_run(store, control, pipeline, "the Start button above")
    return f"Run {run.id} of pipeline {pipeline.name} asked for"


async def run_pipeline_now(request: web.Request) -> web.Response:
    """POST /ui/pipelines/{name}/run: ask the daemon for a run now."""
    return await act(request, _run_now, P + "/pipelines")


# --- targets and incidents ---------------------------------------------------------------------


async def targets_page(request: web.Request) -> web.Response:
    """GET /ui/targets: the HTTP targets, their URLs and headers redacted."""
    offset = _offset(request)
    found = await request.app[STORE].list_targets(limit=PAGE_SIZE + 1, offset=offset)
    rows = [
        {"target": t, "url": redact(t.url), "headers": redact(t.headers)} for t in found[:PAGE_SIZE]
    ]
    context = {"rows": rows, "paging": paging(request, offset, len(found))}
    return render(request, "ui_targets.html", context)


async def _incident_rows(
    store: Store, names: Names, status: IncidentStatus | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    found = await store.list_incidents(status=status, limit=limit, offset=offset)
    now = utcnow()
    return [
        {"incident": i, "job": await names.job(i.job), "seconds": i.duration_seconds(now)}
        for i in found
    ]


async def incidents_page(request: web.Request) -> web.Response:
    """GET /ui/incidents: downtime windows of jobs, open ones first by default."""
    wanted = request.query.get("status", "open")
    status = IncidentStatus(wanted) if wanted in {s.value for s in IncidentStatus} else None
    offset = _offset(request)
    store = request.app[STORE]
    rows = await _incident_rows(store, Names(store), status, PAGE_SIZE + 1, offset)
    context = {
        "rows": rows[:PAGE_SIZE],
        "status": status.value if status else "all",
        "paging": paging(request, offset, len(rows)),
    }
    return render(request, "ui_incidents.html", context)


# --- logs -------------------------------------------------------------------------------------

_ENTRY_FIELDS = ("timestamp", "level", "event", "run_id", "step")


def log_entry(text: str) -> dict[str, Any]:
    """A log line in columns: time, level, event, run, step and the other fields as text."""
    try:
        record = orjson.loads(text)
    except orjson.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        return {"event": text, "details": ""}
    entry: dict[str, Any] = {name: _shown(record.get(name)) for name in _ENTRY_FIELDS}
    entry["details"] = " ".join(
        f"{key}={value if isinstance(value, str) else orjson.dumps(value).decode()}"
        for key, value in record.items()
        if key not in _ENTRY_FIELDS
    )
    return entry


def _shown(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _filled(query: Mapping[str, str]) -> dict[str, str]:
    # A GET form sends its empty fields too; an empty filter is no filter.
    return {key: value for key, value in query.items() if value.strip()}


async def logs_page(request: web.Request) -> web.Response:
    """GET /ui/logs: the last lines that pass the level and run filters; the script follows."""
    params = _filled(request.query)
    params.setdefault("lines", str(LOG_LINES))
    query = validate_query(FollowQuery, params)
    keep = LogFilter(level=query.level, run_id=query.run_id)
    path = request.app[SETTINGS].log_file
    page = await asyncio.to_thread(read_page, path, None, keep, initial_lines=query.lines)
    follow = {"level": query.level, "run_id": query.run_id, "cursor": str(page.cursor)}
    context = {
        "entries": [log_entry(line.text) for line in page.lines],
        "levels": LEVELS,
        "level": query.level or "",
        "run_id": query.run_id or "",
        "lines": query.lines,
        "stream": f"{P}/logs/stream?" + urlencode({k: v for k, v in follow.items() if v}),
    }
    return render(request, "ui_logs.html", context)


async def log_stream(request: web.Request) -> web.StreamResponse:
    """GET /ui/logs/stream: the API's log event stream, behind the dashboard's session."""
    return await stream_logs(request)


# --- the routes ---------------------------------------------------------------------------------

ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "", public(to_overview)),
    ("GET", "/login", public(login_form)),
    ("POST", "/login", public(login)),
    ("POST", "/logout", guarded(logout)),
    ("GET", "/", guarded(overview)),
    ("POST", "/daemon/{action:start|stop|restart}", guarded(daemon_action)),
    ("GET", "/schedules", guarded(schedules_page)),
    ("POST", "/schedules/{id}/{action:pause|resume}", guarded(schedule_action)),
    ("GET", "/runs", guarded(runs_page)),
    ("GET", "/runs/{id}", guarded(run_page)),
    ("GET", "/pipelines", guarded(pipelines_page)),
    ("GET", "/pipelines/{name}", guarded(pipeline_page)),
    ("POST", "/pipelines/{name}/run", guarded(run_pipeline_now)),
    ("GET", "/targets", guarded(targets_page)),
    ("GET", "/incidents", guarded(incidents_page)),
    ("GET", "/logs", guarded(logs_page)),
    ("GET", "/logs/stream", guarded(log_stream)),
)


def add_dashboard(app: web.Application) -> None:
    """Route the dashboard under /ui, with its session keeper, filters and static files."""
    app[SESSIONS] = SessionKeeper()
    aiohttp_jinja2.get_env(app).filters.update(ui_format.FILTERS)
    for method, path, handler in ROUTES:
        if method == "GET":
            app.router.add_get(P + path, handler)
        else:
            app.router.add_route(method, P + path, handler)
    app.router.add_static(P + "/static", bundled_path("templates") / "static")
