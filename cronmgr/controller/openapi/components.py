"""The component schemas collected while the document is built: the models' own JSON
schemas with their definitions hoisted, and the resources (targets, schedules, runs,
nodes) derived from their specs plus the read-only fields of the domain records, so a new field
shows up in the document by itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from copy import deepcopy

from pydantic import BaseModel, TypeAdapter

from cronmgr.controller.openapi.endpoints import REF_TEMPLATE, Schema, array_of, ref
from cronmgr.core.models import Node, Run, Schedule, StepResult, Target
from cronmgr.core.specs.schedules import ScheduleSpec
from cronmgr.core.specs.targets import TargetSpec


class Components:
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
    components: Components, spec: type[BaseModel], read_only: dict[str, Schema], doc: str
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


def patch(components: Components, spec: type[BaseModel]) -> Schema:
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


def resource_schemas(components: Components) -> None:
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
    schedule = _resource(components, ScheduleSpec, extra, doc)
    components.add("Schedule", schedule)
    components.add("ScheduleWritten", _with_warnings(schedule))
    _run_schemas(components)
    _node_schema(components)


def _with_warnings(schedule: Schema) -> Schema:
    """A schedule as its creation and resumption answer it: `warnings` besides."""
    warnings = {
        **array_of({"type": "string"}),
        "description": "Empty, or in words what keeps the schedule from firing now: "
        '"the daemon is not running: this schedule fires once it starts".',
    }
    properties = {**schedule["properties"], "warnings": warnings}
    return {
        **schedule,
        "description": "A schedule, as the answer to its creation or resumption.",
        "properties": properties,
        "required": list(properties),
    }


_TARGET_ID: Schema = {
    "type": ["string", "null"],
    "description": "The target a run of an HTTP schedule called; null for a pipeline's run.",
}


def _run_schemas(components: Components) -> None:
    run: dict[str, Schema] = {}
    for name, schema in components.properties(Run).items():
        if name != "steps":
            run[name] = schema
        if name == "schedule_id":  # a property of Run, so not among its fields
            run["target_id"] = _TARGET_ID
    components.add("Run", {"type": "object", "properties": run, "required": list(run)})
    detail = {**run, "steps": array_of(ref("StepGroup"))}
    components.add("RunDetail", {"type": "object", "properties": detail, "required": list(detail)})
    attempt = {
        n: s for n, s in components.properties(StepResult).items() if n not in ("step", "position")
    }
    components.add(
        "StepAttempt", {"type": "object", "properties": attempt, "required": list(attempt)}
    )


_NODE_NOTES = {
    "pipelines": "The pipelines it has loaded: name -> content hash (16 hex digits).",
    "schedules_owned": "Schedules it fires, as it counted them at its last renewal.",
    "runs_in_flight": "Runs executing on it, as it counted them at its last renewal.",
}


def _node_schema(components: Components) -> None:
    stored = components.properties(Node)
    for name, note in _NODE_NOTES.items():
        stored[name] = {**stored[name], "description": note}
    shown: dict[str, Schema] = {
        "lease_expires_in_seconds": {
            "type": "number",
            "description": "Until its lease runs out, by the controller's clock; negative once "
            "it has.",
        },
        "pipelines_differing": {
            **array_of({"type": "string"}),
            "description": "Its pipelines whose hash is not the one most live nodes report, "
            "by name: it runs none of them.",
        },
        "this_host": {
            "type": "boolean",
            "description": "It runs on the controller's host (same host name).",
        },
    }
    node = {**stored, **shown}
    doc = "A daemon of the store: its row in the nodes table, and what the controller reads in it."
    components.add(
        "Node", {"type": "object", "description": doc, "properties": node, "required": list(node)}
    )
