"""What every dashboard page and form shares: the `/ui` prefix and the session keys, the
rendering of a page from `templates/` with what every page shows (session, flash,
version), the redirects of Post/Redirect/Get with the one-time flash message an action
leaves, the running of a form's action, and the paging of the list pages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote, unquote

import aiohttp_jinja2
import structlog
from aiohttp import web
from multidict import MultiDictProxy

from cronmgr.controller.keys import DASHBOARD_PREFIX
from cronmgr.controller.sessions import Session, SessionKeeper
from cronmgr.core.errors import CronmgrError
from cronmgr.core.models import utcnow
from cronmgr.core.version import __version__

log = structlog.get_logger("cronmgr.dashboard")

P = DASHBOARD_PREFIX
SESSIONS = web.AppKey("dashboard_sessions", SessionKeeper)
SESSION = web.RequestKey("dashboard_session", Session)

FLASH_COOKIE = "cronmgr_flash"
CSRF_FIELD = "csrf_token"
PAGE_SIZE = 50
"""Rows of one page of schedules, runs, targets or incidents."""

Form = MultiDictProxy[Any]


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


FLASH_KINDS = frozenset({"ok", "warning", "error"})


def read_flash(request: web.Request) -> tuple[str, str] | None:
    """The message an action left for the next page: (ok | warning | error, text)."""
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    kind, _, text = unquote(raw).partition(":")
    return (kind if kind in FLASH_KINDS else "ok", text)


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


def text(form: Form, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


# --- paging ---------------------------------------------------------------------------------


def page_offset(request: web.Request) -> int:
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
