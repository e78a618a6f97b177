"""The target forms: create, edit and delete (after a confirmation page) an HTTP target.

A form is turned into `TargetSpec`'s shape (headers as `Name: value` lines, the status
codes as a list, the retries as `retry.max_attempts`) and goes through the API's own create
and update paths, so a bad field is refused in the API's words, shown next to it, with what
was typed kept. Header values are shown redacted and a value sent back as shown (`***`)
keeps the stored one, as in the API.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cronmgr.controller.api.targets import add_target, change_target, remove_target
from cronmgr.controller.dashboard.common import Form, P, render, with_flash
from cronmgr.controller.dashboard.forms import (
    checked,
    form_context,
    form_problem,
    or_none,
    refusal,
    values_of,
)
from cronmgr.controller.keys import STORE
from cronmgr.core.errors import Conflict, InvalidInput
from cronmgr.core.models import Target
from cronmgr.core.secret_refs import redact

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
TEXT_FIELDS = (
    "name",
    "url",
    "method",
    "headers",
    "body_template",
    "timeout_seconds",
    "expected_status",
    "retry.max_attempts",
)
FLAGS = ("follow_redirects", "verify_tls")
FIELDS = (*TEXT_FIELDS, *FLAGS)


def parse_headers(text: str) -> dict[str, str]:
    """`Name: value` lines as a header mapping; blank lines are skipped."""
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise form_problem("headers", f"line {number} has no colon: write Name: value")
        headers[name.strip()] = value.strip()
    return headers


def target_data(values: dict[str, Any]) -> dict[str, Any]:
    """The form's values in `TargetSpec`'s shape; an empty field is its default (None)."""
    data: dict[str, Any] = {
        "name": values["name"].strip(),
        "url": values["url"].strip(),
        "method": values["method"] or "GET",
        "headers": parse_headers(values["headers"]),
        "body_template": values["body_template"] or None,
        "timeout_seconds": or_none(values["timeout_seconds"]),
        "expected_status": values["expected_status"].replace(",", " ").split(),
        "follow_redirects": values["follow_redirects"],
        "verify_tls": values["verify_tls"],
    }
    attempts = or_none(values["retry.max_attempts"])
    if attempts is not None:
        data["retry"] = {"max_attempts": attempts}
    return data


def read_form(form: Form) -> dict[str, Any]:
    """The form as typed: text fields as text, the checkboxes as booleans."""
    values: dict[str, Any] = values_of(form, TEXT_FIELDS)
    values.update({flag: checked(form, flag) for flag in FLAGS})
    return values


def form_values(target: Target) -> dict[str, Any]:
    """A stored target as its edit form shows it, secrets redacted."""
    return {
        "name": target.name,
        "url": redact(target.url),
        "method": target.method,
        "headers": "\n".join(f"{n}: {v}" for n, v in redact(target.headers).items()),
        "body_template": target.body_template or "",
        "timeout_seconds": f"{target.timeout_seconds:g}",
        "expected_status": ", ".join(str(code) for code in target.expected_status),
        "retry.max_attempts": str(target.retry.max_attempts),
        "follow_redirects": target.follow_redirects,
        "verify_tls": target.verify_tls,
    }


NEW_VALUES: dict[str, Any] = {
    **{name: "" for name in TEXT_FIELDS},
    "method": "GET",
    "timeout_seconds": "30",
    "retry.max_attempts": "1",
    "follow_redirects": True,
    "verify_tls": True,
}


def _form_page(
    request: web.Request,
    values: dict[str, Any],
    target: Target | None = None,
    refused: InvalidInput | None = None,
) -> web.Response:
    context = form_context(
        values,
        refusal(refused, FIELDS) if refused else None,
        target=target,
        methods=[(m, m) for m in METHODS],
    )
    return render(request, "ui_target_form.html", context, status=422 if refused else 200)


async def new_target_form(request: web.Request) -> web.Response:
    """GET /ui/targets/new: the create form."""
    return _form_page(request, dict(NEW_VALUES))


async def create_target(request: web.Request) -> web.Response:
    """POST /ui/targets: create; the form again (422) with the API's messages if refused."""
    values = read_form(await request.post())
    try:
        target = await add_target(request, target_data(values))
    except InvalidInput as exc:
        return _form_page(request, values, refused=exc)
    except Conflict as exc:  # the name is taken: a field's problem to the person typing
        message = exc.detail
        return _form_page(request, values, refused=form_problem("name", message))
    return with_flash(f"{P}/targets/{target.id}", "ok", f"Target {target.name} created")


async def edit_target_form(request: web.Request) -> web.Response:
    """GET /ui/targets/{id}/edit: the edit form, filled in (secrets redacted)."""
    target = await request.app[STORE].get_target(request.match_info["id"])
    return _form_page(request, form_values(target), target)


async def update_target(request: web.Request) -> web.Response:
    """POST /ui/targets/{id}/edit: save; the form again (422) with the messages if refused."""
    target = await request.app[STORE].get_target(request.match_info["id"])
    values = read_form(await request.post())
    try:
        patch = target_data(values)
        # A header left out of the form goes: a merge patch removes it only when null.
        patch["headers"] = {**dict.fromkeys(target.headers), **patch["headers"]}
        changed = await change_target(request, target.id, patch)
    except InvalidInput as exc:
        return _form_page(request, values, target, exc)
    except Conflict as exc:
        return _form_page(request, values, target, form_problem("name", exc.detail))
    return with_flash(f"{P}/targets/{changed.id}", "ok", f"Target {changed.name} saved")


async def delete_target_form(request: web.Request) -> web.Response:
    """GET /ui/targets/{id}/delete: what deleting would do, and the button that does it."""
    target = await request.app[STORE].get_target(request.match_info["id"])
    return await _confirm_page(request, target)


async def _confirm_page(
    request: web.Request, target: Target, error: str | None = None
) -> web.Response:
    users = await request.app[STORE].list_schedules(target_id=target.id, limit=20)
    context = {"target": target, "schedules": users, "error": error}
    return render(request, "ui_target_delete.html", context, status=409 if error else 200)


async def delete_target(request: web.Request) -> web.Response:
    """POST /ui/targets/{id}/delete: delete; the API's 409 while schedules use it."""
    target = await request.app[STORE].get_target(request.match_info["id"])
    try:
        await remove_target(request, target.id, cascade=False)
    except Conflict as exc:
        return await _confirm_page(request, target, exc.detail)
    return with_flash(f"{P}/targets", "ok", f"Target {target.name} deleted")
