"""Logging in and out: the login form trades the API token for a session cookie (HttpOnly,
SameSite=Strict, confined to `/ui`), carrying a double-submit CSRF token as there is no
session yet; wrong tokens count against the address (the lockout), and logging out
revokes the session.
"""

from __future__ import annotations

import secrets
from typing import Any

import structlog
from aiohttp import web

from cronmgr.controller.dashboard.common import (
    CSRF_FIELD,
    SESSION,
    SESSIONS,
    P,
    local_path,
    render,
    see_other,
    text,
)
from cronmgr.controller.dashboard.guards import SESSION_COOKIE
from cronmgr.controller.keys import LOCKOUT, TOKEN
from cronmgr.controller.responses import add_retry_after
from cronmgr.controller.sessions import tokens_match
from cronmgr.core.errors import Forbidden, TooManyRequests

log = structlog.get_logger("cronmgr.dashboard")

LOGIN_COOKIE = "cronmgr_login"


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
    if not nonce or not tokens_match(nonce, text(form, CSRF_FIELD)):
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
        if not tokens_match(token, text(form, "token")):
            lockout.failed(request.remote)
            log.warning("dashboard_login_failed", remote=request.remote)
            error = "That is not the API token."
            return _login_page(request, nonce, form.get("next"), status=401, error=error)
    keeper = request.app[SESSIONS]
    _, cookie = keeper.issue()
    log.info("dashboard_login", remote=request.remote)
    response = see_other(local_path(text(form, "next")))
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
