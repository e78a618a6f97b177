"""`/api/v1/targets`: create, list, get, update and delete the HTTP targets, with their
credential headers and URL secrets redacted on the way out and kept when sent back as shown.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cronmgr.controller.api.common import _PAGED, BODY, _changed, _id, _store, deleted, page
from cronmgr.controller.control import DaemonControl
from cronmgr.controller.keys import SETTINGS
from cronmgr.controller.openapi import Endpoint, Reply, array_of, ref
from cronmgr.controller.responses import json_response, read_body
from cronmgr.core.errors import Conflict
from cronmgr.core.models import TARGET_JOB_PREFIX, Run, Target, Trigger, new_id, utcnow
from cronmgr.core.secret_refs import redact
from cronmgr.core.specs.queries import DeleteTargetQuery, PageQuery
from cronmgr.core.specs.targets import TargetSpec
from cronmgr.core.specs.validation import validate, validate_query
from cronmgr.store import Store


def target_body(target: Target) -> dict[str, Any]:
    """A target as the API shows it: credential headers and URL secrets redacted."""
    return {
        "id": target.id,
        **TargetSpec.fields_of(target),
        "url": redact(target.url),
        "headers": redact(target.headers),
        "created_at": target.created_at.isoformat(),
        "updated_at": target.updated_at.isoformat(),
        "status": "error" if target.status_reason else "ok",
        "status_reason": target.status_reason,
    }


def keep_hidden_secrets(patch: dict[str, Any], stored: Target) -> dict[str, Any]:
    """`patch` with values that are exactly what GET showed of a secret put back.

    A client that GETs a target, edits one field and sends the whole object back must not
    overwrite `Authorization: Bearer s3cr3t` with the `***` it was shown; the read-only
    `status` and `status_reason` it sends back as shown are dropped.
    """
    shown_status = target_body(stored)
    patch = {
        k: v
        for k, v in patch.items()
        if k not in TargetSpec.ECHOED_READ_ONLY or v != shown_status[k]
    }
    if "url" in patch and patch["url"] == redact(stored.url):
        patch["url"] = stored.url
    headers = patch.get("headers")
    if isinstance(headers, dict):
        shown = redact(stored.headers)
        patch["headers"] = {
            name: stored.headers[name] if name in shown and value == shown[name] else value
            for name, value in headers.items()
        }
    return patch


async def add_target(request: web.Request, data: dict[str, Any]) -> Target:
    """Validate `data` as a target and store it; InvalidInput naming each bad field,
    Conflict when the name is taken. The API and the dashboard's form create through here."""
    spec = validate(TargetSpec, data, BODY)
    target = spec.to_target(new_id())
    await _store(request).insert_target(target)
    _changed(request)
    return target


async def change_target(request: web.Request, target_id: str, patch: dict[str, Any]) -> Target:
    """Merge `patch` into the stored target (secrets sent back as shown kept), validate the
    whole and store it. The API's PATCH and the dashboard's edit form go through here."""
    store = _store(request)
    stored = await store.get_target(target_id)
    patch = keep_hidden_secrets(patch, stored)
    spec = validate(TargetSpec, TargetSpec.patched(stored, patch), BODY)
    target = spec.to_target(stored.id, created_at=stored.created_at)
    await store.update_target(target)
    _changed(request)
    return target


async def request_target_run(
    store: Store, control: DaemonControl, target: Target, how_to_start: str
) -> Run:
    """Record a pending manual run of `target` and wake the daemon to send it once.

    The controller never sends requests itself: the daemon does, as for a schedule's slot,
    and records the attempt. Conflict when the daemon is not running (`how_to_start` says
    how to start it).
    """
    if not control.is_running():
        raise Conflict(
            f"the daemon is not running, so target {target.name!r} cannot be sent: "
            f"start it first ({how_to_start})"
        )
    job = TARGET_JOB_PREFIX + target.id
    run = Run(id=new_id(), job=job, scheduled_for=utcnow(), trigger=Trigger.MANUAL)
    await store.insert_run(run)
    control.definitions_changed()
    return run


async def create_target(request: web.Request) -> web.Response:
    """POST /api/v1/targets: 201 with the new target; 409 when the name is taken."""
    target = await add_target(request, await read_body(request))
    return json_response(target_body(target), status=201)


async def list_targets(request: web.Request) -> web.Response:
    """GET /api/v1/targets: targets by name."""
    query = validate_query(PageQuery, request.query)
    found = await _store(request).list_targets(limit=query.limit + 1, offset=query.offset)
    return page(request, query, [target_body(t) for t in found])


async def get_target(request: web.Request) -> web.Response:
    """GET /api/v1/targets/{id}."""
    return json_response(target_body(await _store(request).get_target(_id(request))))


async def update_target(request: web.Request) -> web.Response:
    """PATCH /api/v1/targets/{id}: merge, validate the whole, store."""
    patch = await read_body(request, required=True)
    return json_response(target_body(await change_target(request, _id(request), patch)))


async def delete_target(request: web.Request) -> web.Response:
    """DELETE /api/v1/targets/{id}: 409 while schedules use it, unless `?cascade=true` (or,
    without `cascade`, the `cascade_deletes` setting) deletes them along, in one transaction."""
    query = validate_query(DeleteTargetQuery, request.query)
    cascade = request.app[SETTINGS].cascade_deletes if query.cascade is None else query.cascade
    target_id = _id(request)
    schedule_ids = await remove_target(request, target_id, cascade=cascade)
    return deleted("Target", target_id, deleted_schedules=schedule_ids)


async def remove_target(request: web.Request, target_id: str, *, cascade: bool) -> list[str]:
    """Delete a target: Conflict while schedules use it, unless `cascade` deletes them too
    (the ids returned). The API's DELETE and the dashboard's delete go through here."""
    schedule_ids = await _store(request).delete_target(target_id, cascade=cascade)
    _changed(request)
    return schedule_ids


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/api/v1/targets",
        create_target,
        "Create a target",
        "targets",
        Reply(201, "The new target.", ref("Target")),
        body=TargetSpec,
        errors=(409,),
    ),
    Endpoint(
        "GET",
        "/api/v1/targets",
        list_targets,
        "List targets (by name)",
        "targets",
        Reply(200, "Targets.", array_of(ref("Target")), paginated=True),
        description=_PAGED,
        query=PageQuery,
    ),
    Endpoint(
        "GET",
        "/api/v1/targets/{id}",
        get_target,
        "Get a target",
        "targets",
        Reply(200, "The target.", ref("Target")),
    ),
    Endpoint(
        "PATCH",
        "/api/v1/targets/{id}",
        update_target,
        "Update a target (JSON merge patch)",
        "targets",
        Reply(200, "The updated target.", ref("Target")),
        description="A header value sent back exactly as shown (`***`) keeps the stored one.",
        body=TargetSpec,
        partial_body=True,
        errors=(409,),
    ),
    Endpoint(
        "DELETE",
        "/api/v1/targets/{id}",
        delete_target,
        "Delete a target",
        "targets",
        Reply(200, "Deleted; with the ids of the schedules deleted along.", ref("Deleted")),
        description=(
            "409 while schedules use the target, unless `cascade=true` deletes them along "
            "(their runs stay). Without `cascade`, the `cascade_deletes` setting decides "
            "(`CRONMGR_CASCADE_DELETES`; false, so 409, unless configured)."
        ),
        query=DeleteTargetQuery,
        errors=(409,),
    ),
)
