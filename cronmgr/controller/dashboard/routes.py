"""The dashboard's route table, each handler behind its guard, and `add_dashboard`, which
routes it under `/ui` with the session keeper, the template filters and the static files.
"""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from cronmgr.controller.dashboard import format as ui_format
from cronmgr.controller.dashboard.auth import login, login_form, logout
from cronmgr.controller.dashboard.common import SESSIONS, P
from cronmgr.controller.dashboard.controls import daemon_action
from cronmgr.controller.dashboard.guards import Handler, guarded, public
from cronmgr.controller.dashboard.incidents import incidents_page
from cronmgr.controller.dashboard.logs import log_stream, logs_page
from cronmgr.controller.dashboard.nodes import nodes_page
from cronmgr.controller.dashboard.overview import overview, to_overview
from cronmgr.controller.dashboard.pipelines import pipeline_page, pipelines_page, run_pipeline_now
from cronmgr.controller.dashboard.runs import run_page, runs_page
from cronmgr.controller.dashboard.schedule_forms import (
    create_schedule,
    delete_schedule,
    delete_schedule_form,
    edit_schedule_form,
    new_schedule_form,
    update_schedule,
)
from cronmgr.controller.dashboard.schedules import schedule_action, schedules_page
from cronmgr.controller.dashboard.target_forms import (
    create_target,
    delete_target,
    delete_target_form,
    edit_target_form,
    new_target_form,
    update_target,
)
from cronmgr.controller.dashboard.target_page import send_target, target_page
from cronmgr.controller.dashboard.targets import targets_page
from cronmgr.controller.sessions import SessionKeeper
from cronmgr.core.config import bundled_path

ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "", public(to_overview)),
    ("GET", "/login", public(login_form)),
    ("POST", "/login", public(login)),
    ("POST", "/logout", guarded(logout)),
    ("GET", "/", guarded(overview)),
    ("POST", "/daemon/{action:start|stop|restart}", guarded(daemon_action)),
    ("GET", "/schedules", guarded(schedules_page)),
    ("POST", "/schedules", guarded(create_schedule)),
    ("GET", "/schedules/new", guarded(new_schedule_form)),
    ("GET", "/schedules/{id}/edit", guarded(edit_schedule_form)),
    ("POST", "/schedules/{id}/edit", guarded(update_schedule)),
    ("GET", "/schedules/{id}/delete", guarded(delete_schedule_form)),
    ("POST", "/schedules/{id}/delete", guarded(delete_schedule)),
    ("POST", "/schedules/{id}/{action:pause|resume}", guarded(schedule_action)),
    ("GET", "/runs", guarded(runs_page)),
    ("GET", "/runs/{id}", guarded(run_page)),
    ("GET", "/pipelines", guarded(pipelines_page)),
    ("GET", "/pipelines/{name}", guarded(pipeline_page)),
    ("POST", "/pipelines/{name}/run", guarded(run_pipeline_now)),
    ("GET", "/targets", guarded(targets_page)),
    ("POST", "/targets", guarded(create_target)),
    ("GET", "/targets/new", guarded(new_target_form)),
    ("GET", "/targets/{id}", guarded(target_page)),
    ("GET", "/targets/{id}/edit", guarded(edit_target_form)),
    ("POST", "/targets/{id}/edit", guarded(update_target)),
    ("GET", "/targets/{id}/delete", guarded(delete_target_form)),
    ("POST", "/targets/{id}/delete", guarded(delete_target)),
    ("POST", "/targets/{id}/send", guarded(send_target)),
    ("GET", "/incidents", guarded(incidents_page)),
    ("GET", "/nodes", guarded(nodes_page)),
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
