"""The hand-written schemas: the shapes of the replies that have no model (the error
body, the daemon's status, log lines, metrics and the like), the shared error responses
and the paging headers of list replies.
"""

from __future__ import annotations

from typing import Any

from cronmgr.controller.openapi.endpoints import Schema, array_of, ref

_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_INT = {"type": ["integer", "null"]}
_WARNINGS = {
    **array_of({"type": "string"}),
    "description": "Things worth knowing about what was done, in words; empty when none.",
}
_SCHEDULES_ONLY = {
    "type": "boolean",
    "description": "The daemon runs without a pipeline (none was loaded when it started): "
    "it fires the schedules only.",
}

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
            "interval_seconds": {
                **_NULLABLE_INT,
                "description": "How often the pipeline runs; null with the schedules only.",
            },
            "pipeline": {"type": ["string", "null"]},
            "schedules_only": _SCHEDULES_ONLY,
            "warnings": _WARNINGS,
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
            "pipeline": {
                "type": ["string", "null"],
                "description": "The pipeline it was started with (null: none, or stopped).",
            },
            "interval_seconds": {
                **_NULLABLE_INT,
                "description": "How often that pipeline runs (null without one).",
            },
            "schedules_only": {
                "type": "boolean",
                "description": "It runs without a pipeline (none was loaded when it started): "
                "it fires the schedules only. False when it is not running.",
            },
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
            "node": {
                "type": ["string", "null"],
                "description": "The daemon's id among the nodes of its store (null when stopped).",
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
        "properties": {
            "logs": {"type": "string"},
            "line_count": {"type": "integer"},
            "truncated": {
                "type": "boolean",
                "const": True,
                "description": "Present when a cap left out lines that were asked for.",
            },
        },
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

ERROR_RESPONSES = {
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

PAGE_HEADERS: dict[str, Any] = {
    "X-Next-Offset": {
        "description": "The `offset` of the next page; absent on the last page.",
        "schema": {"type": "integer"},
    },
    "Link": {
        "description": 'RFC 8288 `<url>; rel="next"`; absent on the last page.',
        "schema": {"type": "string"},
    },
}
