"""A target's assertions checked against a response: body text, regex, JSON field, latency.

Each failed assertion gives a message saying what was expected and what was found (cut
to a readable length); a JSON field is looked up by a dotted path and compared with JSON
equality. The checks see only the kept part of the body, and say so.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from cronmgr.core.models import Assertion
from cronmgr.runners.http.body import KEEP_BYTES, Body

_SHOWN_CHARS = 120  # of a found value or body start, in an assertion message


def check_assertions(assertions: Sequence[Assertion], body: Body, duration_ms: int) -> list[str]:
    """A message for every assertion the response fails, in definition order."""
    failures = []
    for assertion in assertions:
        check = _CHECKS.get(assertion.kind)
        if check is None:
            failures.append(f"{assertion.kind}: unknown assertion kind")
            continue
        message = check(assertion, body, duration_ms)
        if message is not None:
            failures.append(message)
    return failures


def _check_contains(assertion: Assertion, body: Body, duration_ms: int) -> str | None:
    needle = str(assertion.value)
    if needle in body.text:
        return None
    return f"body_contains {needle!r}: not in the {body.scope()}, which starts {_start(body)}"


def _check_regex(assertion: Assertion, body: Body, duration_ms: int) -> str | None:
    try:
        pattern = _compiled_pattern(str(assertion.value))
    except re.error as exc:
        return f"body_regex {assertion.value!r}: invalid pattern: {exc}"
    # Searched in the kept bytes only: a pathological pattern costs at most that much text.
    if pattern.search(body.text):
        return None
    where = body.scope()
    return f"body_regex {pattern.pattern!r}: no match in the {where}, which starts {_start(body)}"


def _check_json_field(assertion: Assertion, body: Body, duration_ms: int) -> str | None:
    label = f"json_field {assertion.path}"
    if not body.complete:
        return f"{label}: the body is larger than {KEEP_BYTES} bytes, too large to parse"
    try:
        document = orjson.loads(body.kept)
    except orjson.JSONDecodeError:
        return f"{label}: the body is not JSON; it starts {_start(body)}"
    found, missing = json_lookup(document, assertion.path or "")
    if missing is not None:
        return f"{label}: no such field ({missing})"
    if json_equal(found, assertion.value):
        return None
    return f"{label}: expected {_json(assertion.value)}, found {_json(found)}"


def _check_latency(assertion: Assertion, body: Body, duration_ms: int) -> str | None:
    limit = float(assertion.value)
    if duration_ms <= limit:
        return None
    return f"max_latency_ms {limit:g}: the response took {duration_ms} ms"


_CHECKS: dict[str, Callable[[Assertion, Body, int], str | None]] = {
    "body_contains": _check_contains,
    "body_regex": _check_regex,
    "json_field": _check_json_field,
    "max_latency_ms": _check_latency,
}


@functools.lru_cache(maxsize=256)
def _compiled_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_INDEX = re.compile(r"\[(\d+)\]")


def json_lookup(document: Any, path: str) -> tuple[Any, str | None]:
    """The value at a dotted `path` (`data.items.0.id` or `data.items[0].id`).

    Returns (value, None), or (None, why) when the path leads nowhere. An empty path is
    the whole document.
    """
    value = document
    keys = [key for key in _INDEX.sub(r".\1", path).split(".") if key]
    for depth, key in enumerate(keys):
        where = ".".join(keys[: depth + 1])
        if isinstance(value, dict):
            if key not in value:
                return None, f"{where} is missing"
            value = value[key]
        elif isinstance(value, list):
            if not key.isdigit() or int(key) >= len(value):
                return None, f"{where}: the list has {len(value)} items"
            value = value[int(key)]
        else:
            return None, f"{where}: {_json(value)} has no fields"
    return value, None


def json_equal(found: Any, expected: Any) -> bool:
    """JSON equality: 1 equals 1.0, but true never equals 1 (as Python would have it)."""
    if isinstance(found, bool) or isinstance(expected, bool):
        return type(found) is type(expected) and found == expected
    if isinstance(found, dict) and isinstance(expected, dict):
        return found.keys() == expected.keys() and all(
            json_equal(found[key], expected[key]) for key in found
        )
    if isinstance(found, list) and isinstance(expected, list):
        return len(found) == len(expected) and all(map(json_equal, found, expected))
    return bool(found == expected)


def _json(value: Any) -> str:
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return _cut(text)


def _start(body: Body) -> str:
    return repr(_cut(body.text)) if body.size else "(empty)"


def _cut(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"
