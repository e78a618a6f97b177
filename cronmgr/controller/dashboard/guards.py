"""The guards every dashboard handler is wrapped in: `public` gives it HTML error pages and
the security headers (no framing, no script or style the controller does not serve
itself, no caching), `guarded` also needs a session and, for anything but a read, the
session's CSRF token.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

import structlog
from aiohttp import web

from cronmgr.controller.dashboard.common import (
    CSRF_FIELD,
    SESSION,
    SESSIONS,
    P,
    render,
    see_other,
)
from cronmgr.controller.sessions import Session
from cronmgr.core.errors import CronmgrError, Forbidden

log = structlog.get_logger("cronmgr.dashboard")

SESSION_COOKIE = "cronmgr_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

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
