"""The API description: an OpenAPI 3.1 document built from the route table and the models.

Every route of the API is an `Endpoint` (method, path, handler, summary, query and body
models, reply). `web.add_routes` registers the same table, so nothing of the API is routed
that is not described. The dashboard's pages under `/ui` (HTML forms that answer with
redirects, see `dashboard.py`) are not part of the API and not in the document. Request
bodies and query parameters are the pydantic models that validate them
(`model_json_schema`, with their definitions hoisted into `components/schemas`); resource
replies are derived from those models plus the read-only fields of the domain records, so
a new field shows up in the document by itself.

`docs_context` turns the document into plain rows for `templates/docs.html`, which renders
it on the server: the page needs no script and no network.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from markupsafe import Markup, escape
from pydantic import BaseModel, TypeAdapter

from cronmgr.core.bounds import MAX_FILTER_CHARS
from cronmgr.core.models import Run, Schedule, StepResult, Target
from cronmgr.core.specs.schedules import ScheduleSpec
from cronmgr.core.specs.targets import TargetSpec

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Schema = dict[str, Any]

OPENAPI_VERSION = "3.1.0"
REF_PREFIX = "#/components/schemas/"
REF_TEMPLATE = REF_PREFIX + "{model}"
SECURITY_SCHEME = "bearerAuth"
_PATH_PARAM = re.compile(r"\{(\w+)\}")

DESCRIPTION = """\
cronmgr's controller: daemon control (`/api/cron/*`, as the Pipeline Cron Manager API \
documents it) and the scheduling resources (`/api/v1/*`, with the API Scheduler's field \
names).

**Auth**: `Authorization: Bearer <token>` on every endpoint but `/`, `/health`, \
`/api/v1/health`, `/openapi.json` and `/docs` (they hold no secrets). The token is in the \
state directory's `api-token` file unless configured (`CRONMGR_API_TOKEN`).

**Errors** always have the body `{"error": true, "detail", "errors": [{"field", "message", \
"type"}], "timestamp"}`: 400 unreadable body, 401 no or bad token, 404 unknown id or path, \
409 conflict (duplicate name, target in use, daemon running), 413 body too large, \
422 invalid field (named in `detail` and `errors`).

**Lists** are bare JSON arrays, as the API Scheduler's clients expect, paged with `limit` \
and `offset`. When more items may follow, the answer carries `X-Next-Offset` and a \
`Link: <…>; rel="next"` header; the last page has neither.

**Times** are ISO 8601. A time without an offset is read in the schedule's `timezone` \
(schedule fields) or in UTC (query parameters).

**PATCH** bodies are JSON merge patches (RFC 7396): fields given replace the stored ones, \
`null` resets a field to its default, and the merged definition is validated as a whole, \
as a POST would be. Changing `schedule_type` drops the old timing field; setting \
`target_id` drops `pipeline` and the other way round.
"""


@dataclass(frozen=True, slots=True)
class Reply:
    """The successful answer of an endpoint."""

    status: int
    description: str
    schema: Schema | None = None
    media_type: str = "application/json"
    paginated: bool = False


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One route: what aiohttp serves and what the document says about it."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    reply: Reply
    description: str = ""
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_required: bool = True
    partial_body: bool = False
    errors: tuple[int, ...] = ()
    operation_id: str | None = None


def ref(name: str | type[BaseModel]) -> Schema:
    """A reference to a component schema."""
    return {"$ref": REF_PREFIX + (name if isinstance(name, str) else name.__name__)}


def array_of(item: Schema) -> Schema:
    """An array of `item`."""
    return {"type": "array", "items": item}


# --- hand-written shapes of the replies that have no model --------------------------------

_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_INT = {"type": ["integer", "null"]}

FIXED_SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "description": "The uniform error body.",
        "properties": {
            "error": {"const": True},
            "detail": {"type": "string", "description": "What is wrong, in words."},
            "errors": array_of(ref("FieldError")),
            "timestamp": _TIME,
        },
        "required": ["error", "detail", "errors", "timestamp"],
    },
    "FieldError": {
        "type": "object",
        "description": "One invalid field (422); other errors may carry other keys.",
        "properties": {
            "field": {"type": "string", "description": "Dotted path, e.g. retry.max_attempts."},
            "message": {"type": "string"},
            "type": {"type": "string"},
        },
    },
    "Message": {
        "type": "object",
        "properties": {
            "success": {"const": True},
            "message": {"type": "string"},
            "timestamp": _TIME,
        },
        "required": ["success", "message", "timestamp"],
    },
    "DaemonStarted": {
        "type": "object",
        "properties": {
            "success": {"const": True},
            "message": {"type": "string", "examples": ["Daemon started ... (PID: 4242)"]},
            "timestamp": _TIME,
            "pid": {"type": "integer"},
            "interval_seconds": {"type": "integer"},
            "pipeline": {"type": "string"},
        },
        "required": ["success", "message", "timestamp", "pid"],
    },
    "DaemonStopped": {
        "type": "object",
        "properties": {
            "success": {"const": True},
            "message": {"type": "string"},
            "timestamp": _TIME,
            "pid": _NULLABLE_INT,
        },
        "required": ["success", "message", "timestamp"],
    },
    "DaemonStatus": {
        "type": "object",
        "description": "The seed's three fields, then process and supervision details.",
        "properties": {
            "is_running": {"type": "boolean"},
            "pid": _NULLABLE_INT,
            "message": {"type": "string"},
            "started_at": {"type": ["string", "null"], "format": "date-time"},
            "uptime_seconds": {"type": ["number", "null"]},
            "cpu_percent": {"type": ["number", "null"]},
            "memory_rss_bytes": _NULLABLE_INT,
            "children": {"type": "array", "items": {"type": "object"}},
            "version": {"type": "string"},
            "active_runs": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Ids of the runs executing now.",
            },
            "queued_runs": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Ids of pipeline runs waiting (concurrency limits, queue policy).",
            },
            "next_runs": {"type": "array", "items": {"type": "object"}},
            "heartbeat_at": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "When the daemon last published its state (every few seconds).",
            },
            "schedule_lag_seconds": {
                "type": ["object", "null"],
                "description": "How late slots fired lately: last, p50, p99 and samples.",
            },
            "timestamp": _TIME,
        },
        "required": ["is_running", "pid", "message"],
    },
    "Logs": {
        "type": "object",
        "properties": {"logs": {"type": "string"}, "line_count": {"type": "integer"}},
        "required": ["logs", "line_count"],
    },
    "LogChunk": {
        "type": "object",
        "description": "Log lines after a cursor, and what happened to the file since.",
        "properties": {
            "lines": array_of({"type": "string"}),
            "cursor": {
                "type": "string",
                "description": (
                    "`<inode>:<offset>:<check>`: the file, the offset after the last line "
                    "read, a checksum of the file's start. Pass it back to continue."
                ),
            },
            "rotated": {
                "type": "boolean",
                "description": "The file was rotated: the rest of it came first, then the new one.",
            },
            "cleared": {
                "type": "boolean",
                "description": "The file was emptied since; reading started at its first line.",
            },
            "reset": {
                "type": "boolean",
                "description": (
                    "The cursor's position no longer existed (cleared, or rotated out of the "
                    "kept backups): lines may be missing."
                ),
            },
            "more": {
                "type": "boolean",
                "description": "The answer stopped at its size limit: ask again at once.",
            },
        },
        "required": ["lines", "cursor", "rotated", "cleared", "reset", "more"],
    },
    "Health": {
        "type": "object",
        "properties": {
            "status": {"const": "healthy"},
            "timestamp": _TIME,
            "version": {"type": "string"},
        },
        "required": ["status", "timestamp"],
    },
    "Deleted": {
        "type": "object",
        "properties": {
            "success": {"const": True},
            "message": {"type": "string"},
            "id": {"type": "string"},
            "deleted_schedules": {
                **array_of({"type": "string"}),
                "description": "Ids of the schedules deleted with a target (cascade).",
            },
            "timestamp": _TIME,
        },
        "required": ["success", "message", "id", "timestamp"],
    },
    "PipelineSummary": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "step_count": {"type": "integer"},
            "file": {"type": "string"},
            "schedule_id": {
                "type": ["string", "null"],
                "description": "`pipeline.<name>` when the file declares a [schedule].",
            },
        },
        "required": ["name", "description", "step_count", "file", "schedule_id"],
    },
    "Pipeline": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "file": {"type": "string"},
            "schedule_id": {"type": ["string", "null"]},
            "max_concurrent_runs": _NULLABLE_INT,
            "overlap_policy": {"enum": ["skip", "queue", "allow", "replace"]},
            "schedule": {
                "type": ["object", "null"],
                "description": (
                    "The file's [schedule] table under its file names, then the live state "
                    "(status, next_run_at, last_run_at, ...) once the daemon synced it."
                ),
            },
            "steps": array_of(ref("PipelineStep")),
            "recent_runs": array_of(ref("Run")),
        },
        "required": ["name", "description", "file", "steps", "schedule", "recent_runs"],
    },
    "PipelineStep": {
        "type": "object",
        "description": (
            "A command, http or target step; of its environment only the variable names "
            "are shown, and an inline request's secrets are redacted."
        ),
        "properties": {
            "name": {"type": "string"},
            "type": {"enum": ["command", "http", "target"]},
            "argv": {"type": ["array", "null"], "items": {"type": "string"}},
            "shell": {"type": ["string", "null"]},
            "http": {"type": ["object", "null"], "description": "An inline request."},
            "target": {"type": ["string", "null"], "description": "A target's name."},
            "cwd": {"type": "string"},
            "env_names": array_of({"type": "string"}),
            "timeout_seconds": {"type": "number"},
            "retries": {"type": "integer"},
            "retry_backoff_seconds": {"type": "number"},
            "continue_on_error": {"type": "boolean"},
            "needs": {"type": ["array", "null"], "items": {"type": "string"}},
        },
        "required": ["name", "type", "cwd", "env_names", "timeout_seconds", "continue_on_error"],
    },
    "StepGroup": {
        "type": "object",
        "description": "One step of a run with every attempt of it, oldest first.",
        "properties": {
            "step": {"type": "string"},
            "position": {"type": "integer", "description": "The step's place in its run."},
            "status": {**ref("RunStatus"), "description": "The last attempt's status."},
            "attempts": array_of(ref("StepAttempt")),
        },
        "required": ["step", "position", "status", "attempts"],
    },
}

_ERROR_RESPONSES = {
    400: "The body is not a JSON object.",
    401: "No or wrong bearer token.",
    404: "No such id or name.",
    409: "Conflict with the current state.",
    413: "The body is larger than the limit.",
    422: "A field is invalid; `detail` and `errors` name it.",
    429: "Too many wrong tokens from this address of late; `Retry-After` says how long to wait.",
    503: "The daemon could not be started or stopped.",
    507: "The store's disk is full; nothing was changed.",
}

_PAGE_HEADERS: dict[str, Any] = {
    "X-Next-Offset": {
        "description": "The `offset` of the next page; absent on the last page.",
        "schema": {"type": "integer"},
    },
    "Link": {
        "description": 'RFC 8288 `<url>; rel="next"`; absent on the last page.',
        "schema": {"type": "string"},
    },
}


# --- building the document ------------------------------------------------------------------


class _Components:
    """The component schemas collected while the document is built."""

    def __init__(self) -> None:
        self.schemas: dict[str, Schema] = {}

    def add(self, name: str, schema: Schema) -> None:
        """Register `schema` as `name`; the same name must always mean the same schema."""
        known = self.schemas.setdefault(name, schema)
        if known != schema:
            raise ValueError(f"two different schemas are both called {name!r}")

    def hoist(self, schema: Schema) -> Schema:
        """`schema` without its `$defs`, which become components."""
        schema = deepcopy(schema)
        for name, definition in schema.pop("$defs", {}).items():
            self.add(name, definition)
        return schema

    def model(self, model: type[BaseModel]) -> Schema:
        """A model as a component; returns the reference to it."""
        schema = model.model_json_schema(ref_template=REF_TEMPLATE, mode="validation")
        self.add(model.__name__, self.hoist(schema))
        return ref(model)

    def properties(self, cls: type, names: Iterable[str] | None = None) -> dict[str, Schema]:
        """The (serialised) property schemas of a dataclass, all or just `names`."""
        schema = TypeAdapter(cls).json_schema(ref_template=REF_TEMPLATE, mode="serialization")
        props: dict[str, Schema] = self.hoist(schema)["properties"]
        return {n: props[n] for n in names} if names is not None else props


def _resource(
    components: _Components, spec: type[BaseModel], read_only: dict[str, Schema], doc: str
) -> Schema:
    """A stored resource: its spec's fields, then the fields the server adds."""
    components.model(spec)
    spec_props = components.schemas[spec.__name__]["properties"]
    extra = {name: {**schema, "readOnly": True} for name, schema in read_only.items()}
    properties = {**spec_props, **extra}
    return {
        "type": "object",
        "description": doc,
        "properties": properties,
        "required": list(properties),
    }


def _patch(components: _Components, spec: type[BaseModel]) -> Schema:
    """The body of a PATCH: any of the spec's fields, `null` resetting one to its default."""
    components.model(spec)
    props = components.schemas[spec.__name__]["properties"]
    properties = {name: {"anyOf": [s, {"type": "null"}]} for name, s in props.items()}
    return {
        "type": "object",
        "description": f"A JSON merge patch of a {spec.__name__}; the result must be valid.",
        "properties": properties,
        "additionalProperties": False,
    }


def _resource_schemas(components: _Components) -> None:
    target_extra = components.properties(Target, ("id", "created_at", "updated_at"))
    target_extra["status"] = {
        "type": "string",
        "enum": ["ok", "error"],
        "description": "`error`: its stored definition can't be used (see status_reason).",
    }
    target_extra["status_reason"] = components.properties(Target, ("status_reason",))[
        "status_reason"
    ]
    target = _resource(components, TargetSpec, target_extra, "A target, secrets redacted.")
    target["properties"]["headers"] = {
        **target["properties"]["headers"],
        "description": "Credential headers show `***`; `${env:NAME}` references as written.",
    }
    components.add("Target", target)
    stored = components.properties(Schedule)
    extra = {n: s for n, s in stored.items() if n not in ScheduleSpec.model_fields}
    extra["window_end"] = {"type": ["string", "null"], "format": "date-time"}
    doc = "A schedule with its status and the engine's bookkeeping."
    components.add("Schedule", _resource(components, ScheduleSpec, extra, doc))
    _run_schemas(components)


def _run_schemas(components: _Components) -> None:
    run = {n: s for n, s in components.properties(Run).items() if n != "steps"}
    components.add("Run", {"type": "object", "properties": run, "required": list(run)})
    detail = {**run, "steps": array_of(ref("StepGroup"))}
    components.add("RunDetail", {"type": "object", "properties": detail, "required": list(detail)})
    attempt = {
        n: s for n, s in components.properties(StepResult).items() if n not in ("step", "position")
    }
    components.add(
        "StepAttempt", {"type": "object", "properties": attempt, "required": list(attempt)}
    )


def _parameters(components: _Components, endpoint: Endpoint) -> list[Schema]:
    params: list[Schema] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "maxLength": MAX_FILTER_CHARS},
        }
        for name in _PATH_PARAM.findall(endpoint.path)
    ]
    if endpoint.query is None:
        return params
    schema = components.hoist(endpoint.query.model_json_schema(ref_template=REF_TEMPLATE))
    required = set(schema.get("required", ()))
    for name, prop in schema["properties"].items():
        param = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": _query_schema(prop),
        }
        if "description" in prop:
            param["description"] = prop["description"]
        params.append(param)
    return params


def _query_schema(prop: Schema) -> Schema:
    """A query parameter's schema: absent is how a query says null, so `T | None` is `T`."""
    prop = {k: v for k, v in prop.items() if k not in ("title", "description")}
    branches = [b for b in prop.get("anyOf", ()) if b != {"type": "null"}]
    if len(branches) != 1:
        return prop
    rest = {k: v for k, v in prop.items() if k != "anyOf"}
    if rest.get("default", 0) is None:
        del rest["default"]
    return {**branches[0], **rest}


def _request_body(components: _Components, endpoint: Endpoint) -> Schema | None:
    if endpoint.body is None:
        return None
    if endpoint.partial_body:
        name = endpoint.body.__name__.removesuffix("Spec") + "Patch"
        components.add(name, _patch(components, endpoint.body))
        schema = ref(name)
    else:
        schema = components.model(endpoint.body)
    return {"required": endpoint.body_required, "content": {"application/json": {"schema": schema}}}


def _error_statuses(endpoint: Endpoint, open_paths: frozenset[str]) -> list[int]:
    statuses = set(endpoint.errors)
    if endpoint.path not in open_paths:
        statuses.update((401, 429))
    if endpoint.body is not None:
        statuses.update((400, 413, 422))
    if endpoint.query is not None:
        statuses.add(422)
    if _PATH_PARAM.search(endpoint.path):
        statuses.add(404)
    if endpoint.method != "GET" and endpoint.path.startswith("/api/v1/"):
        statuses.add(507)  # the resource API writes to the store
    return sorted(statuses)


def _responses(endpoint: Endpoint, open_paths: frozenset[str]) -> Schema:
    reply = endpoint.reply
    ok: Schema = {"description": reply.description}
    if reply.schema is not None:
        ok["content"] = {reply.media_type: {"schema": reply.schema}}
    if reply.paginated:
        ok["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in _PAGE_HEADERS}
    responses: Schema = {str(reply.status): ok}
    for status in _error_statuses(endpoint, open_paths):
        responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    return responses


def _operation(components: _Components, endpoint: Endpoint, open_paths: frozenset[str]) -> Schema:
    operation: Schema = {
        "operationId": endpoint.operation_id or endpoint.handler.__name__,
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "parameters": _parameters(components, endpoint),
        "responses": _responses(endpoint, open_paths),
    }
    if endpoint.description:
        operation["description"] = endpoint.description
    body = _request_body(components, endpoint)
    if body is not None:
        operation["requestBody"] = body
    if endpoint.path in open_paths:
        operation["security"] = []
    return operation


def build_document(
    endpoints: Iterable[Endpoint], *, version: str, open_paths: frozenset[str]
) -> Schema:
    """The OpenAPI 3.1 document of `endpoints`."""
    components = _Components()
    for name, schema in FIXED_SCHEMAS.items():
        components.add(name, schema)
    _resource_schemas(components)
    paths: dict[str, Schema] = {}
    for endpoint in endpoints:
        item = paths.setdefault(endpoint.path, {})
        item[endpoint.method.lower()] = _operation(components, endpoint, open_paths)
    responses = _error_components()
    used = _reachable(components.schemas, [paths, responses])
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "cronmgr", "version": version, "description": DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": {n: s for n, s in sorted(components.schemas.items()) if n in used},
            "responses": responses,
            "headers": _PAGE_HEADERS,
            "securitySchemes": {SECURITY_SCHEME: {"type": "http", "scheme": "bearer"}},
        },
        "security": [{SECURITY_SCHEME: []}],
    }


def _reachable(schemas: dict[str, Schema], roots: list[Any]) -> set[str]:
    """Names of the schemas that `roots` refer to, directly or through other schemas."""
    # Helper definitions of the domain records (their own Assertion, RetryPolicy) come
    # along when their fields are borrowed; only what is referred to is published.
    found: set[str] = set()
    pending = [name for root in roots for name in _refs(root)]
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending.extend(_refs(schemas[name]))
    return found


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        target = node.get("$ref")
        if isinstance(target, str) and target.startswith(REF_PREFIX):
            yield target.removeprefix(REF_PREFIX)
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _error_components() -> Schema:
    components: Schema = {
        f"E{status}": {
            "description": text,
            "content": {"application/json": {"schema": ref("Error")}},
        }
        for status, text in _ERROR_RESPONSES.items()
    }
    components["E429"]["headers"] = {
        "Retry-After": {
            "description": "Seconds until the address may try again.",
            "schema": {"type": "integer"},
        }
    }
    return components


# --- the docs page --------------------------------------------------------------------------


def docs_context(document: Schema) -> dict[str, Any]:
    """What templates/docs.html renders: operations by tag and schemas as rows."""
    schemas = document["components"]["schemas"]
    tags: dict[str, list[dict[str, Any]]] = {}
    errors = document["components"]["responses"]
    for path, method, operation in operations(document):
        row = _operation_row(path, method, operation, errors)
        tags.setdefault(operation["tags"][0], []).append(row)
    return {
        "info": document["info"],
        "intro": [prose(p) for p in document["info"]["description"].split("\n\n")],
        "tags": tags,
        "schemas": [_schema_row(name, schema) for name, schema in schemas.items()],
    }


def operations(document: Schema) -> Iterator[tuple[str, str, Schema]]:
    """(path, METHOD, operation) of every operation of `document`, in document order."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method.upper(), operation


def _operation_row(path: str, method: str, operation: Schema, errors: Schema) -> dict[str, Any]:
    body = operation.get("requestBody")
    return {
        "anchor": operation["operationId"],
        "method": method,
        "path": path,
        "summary": operation["summary"],
        "description": prose(operation.get("description", "")),
        "open": operation.get("security") == [],
        "parameters": [
            {
                "name": p["name"],
                "in": p["in"],
                "required": p.get("required", False),
                "type": type_label(p["schema"]),
                "notes": constraints(p["schema"]),
                "description": prose(p.get("description", "")),
            }
            for p in operation["parameters"]
        ],
        "body": type_label(_body_schema(body)) if body else None,
        "body_required": bool(body and body.get("required")),
        "responses": [_response_row(s, r, errors) for s, r in operation["responses"].items()],
    }


def _body_schema(body: Schema) -> Schema:
    schema: Schema = body["content"]["application/json"]["schema"]
    return schema


def _response_row(status: str, response: Schema, errors: Schema) -> dict[str, Any]:
    if "$ref" in response:
        shared = errors[response["$ref"].rsplit("/", 1)[-1]]
        return {
            "status": status,
            "description": prose(shared["description"]),
            "type": ref_label("Error"),
        }
    media = next(iter(response.get("content", {}).items()), None)
    label = type_label(media[1]["schema"]) if media else Markup("no body")
    if media and media[0] != "application/json":
        label = Markup("{} ({})").format(label, media[0])
    headers = ", ".join(response.get("headers", {}))
    return {
        "status": status,
        "description": response["description"],
        "type": label,
        "headers": headers,
    }


def _schema_row(name: str, schema: Schema) -> dict[str, Any]:
    required = set(schema.get("required", ()))
    return {
        "name": name,
        "description": prose(schema.get("description", "")),
        "type": type_label({k: v for k, v in schema.items() if k != "properties"}),
        "properties": [
            {
                "name": prop_name,
                "type": type_label(prop),
                "required": prop_name in required,
                "notes": constraints(prop),
                "description": prose(prop.get("description", "")),
            }
            for prop_name, prop in schema.get("properties", {}).items()
        ],
    }


_CODE = re.compile(r"`([^`]+)`")
_STRONG = re.compile(r"\*\*(.+?)\*\*")


def prose(text: str) -> Markup:
    """Description text as HTML: escaped, with `code` and **bold** marked up."""
    html = _CODE.sub(r"<code>\1</code>", str(escape(text)))
    return Markup(_STRONG.sub(r"<strong>\1</strong>", html))


def ref_label(name: str) -> Markup:
    """A link to a schema on the docs page."""
    return Markup('<a href="#schema-{0}">{0}</a>').format(name)


def type_label(schema: Schema) -> Markup:
    """A short, linked description of a schema's type (`array of Target`, `string | null`)."""
    if "$ref" in schema:
        return ref_label(schema["$ref"].removeprefix(REF_PREFIX))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return Markup(" | ").join(type_label(s) for s in schema[key])
    if "enum" in schema:
        return Markup("one of: {}").format(", ".join(str(v) for v in schema["enum"]))
    if "const" in schema:
        return Markup("{}").format(_json_literal(schema["const"]))
    return _typed_label(schema)


def _typed_label(schema: Schema) -> Markup:
    kind = schema.get("type")
    if isinstance(kind, list):
        return Markup(" | ").join(_typed_label({**schema, "type": k}) for k in kind)
    if kind == "array":
        return Markup("array of {}").format(type_label(schema.get("items", {})))
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return Markup("map of {}").format(type_label(schema["additionalProperties"]))
    if kind is None:
        return Markup("any")
    fmt = schema.get("format")
    return escape(f"{kind} ({fmt})" if fmt and kind == "string" else str(kind))


def _json_literal(value: Any) -> str:
    return orjson.dumps(value).decode()


_CONSTRAINTS = (
    ("minimum", "≥ {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "length ≥ {}"),
    ("maxLength", "length ≤ {}"),
    ("maxItems", "at most {} items"),
    ("pattern", "matches {}"),
)


def constraints(schema: Schema) -> str:
    """The limits and the default of a schema, in words (`> 0, ≤ 300, default 30`)."""
    parts: list[str] = []
    for branch in [schema, *schema.get("anyOf", ())]:
        parts.extend(
            template.format(branch[key]) for key, template in _CONSTRAINTS if key in branch
        )
    if "default" in schema:
        parts.append(f"default {_json_literal(schema['default'])}")
    return ", ".join(parts)
