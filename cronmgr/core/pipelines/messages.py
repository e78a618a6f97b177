"""Pydantic's errors in the pipeline file's words: where (the step by number and name, then
the field) and what ("must be at least 1", "is required", "unknown field").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic_core import ErrorDetails

from cronmgr.core.pipelines.pipeline import Loc

_NAME_RULE = "must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
_PLAIN_MESSAGES = {
    "missing": "is required",
    "string_pattern_mismatch": _NAME_RULE,
    "string_type": "must be a string",
    "list_type": "must be a list",
    "bool_type": "must be true or false",
    "int_type": "must be a whole number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
}
_BOUNDS = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}


def where(loc: Loc, data: Mapping[str, Any]) -> str:
    parts: list[str] = []
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        parts.append(_step_label(loc[1], data))
        loc = loc[2:]
    if loc:
        parts.append(str(loc[0]) + "".join(_item(p) for p in loc[1:]))
    return ": ".join(parts)


def _item(part: int | str) -> str:
    return f"[{part}]" if isinstance(part, int) else f".{part}"


def _step_label(index: int, data: Mapping[str, Any]) -> str:
    steps = data.get("steps")
    step = steps[index] if isinstance(steps, list) and index < len(steps) else None
    name = step.get("name") if isinstance(step, dict) else None
    label = f"step {index + 1}"
    return f"{label} ({name!r})" if isinstance(name, str) and name else label


def what(err: ErrorDetails, allowed: Sequence[str] = ()) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        return f"must be {words} {ctx[key]:g}"
    if kind == "extra_forbidden":
        return "unknown field" + (" (allowed: " + ", ".join(allowed) + ")" if allowed else "")
    plain = _PLAIN_MESSAGES.get(kind)
    return plain if plain else err["msg"][:1].lower() + err["msg"][1:]
