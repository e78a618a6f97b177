"""What both transports share: where to send (base URL and token, from the arguments or
the configured location), the request headers, and how a reply becomes data or one of
the project's exceptions (decoding, the next page's call, the error mapping)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from cronmgr.client.calls import Call
from cronmgr.core.errors import (
    ConfigError,
    ControllerUnreachable,
    CronmgrError,
    TooManyRequests,
    error_for_status,
)
from cronmgr.core.locate import Located, is_loopback, load_location, read_token

if TYPE_CHECKING:
    from cronmgr.core.config import Settings

DEFAULT_TIMEOUT = 30.0
_MAX_RAW_DETAIL = 500  # characters of a non-JSON error body worth showing


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: bytes
    headers: Mapping[str, str]  # names in lower case


def _resolve(
    base_url: str | None, token: str | None, settings: Settings | None
) -> tuple[str, str | None]:
    """The base URL and token to use; settings are only read when something is missing."""
    if base_url is None or token is None:
        # Without settings given, only the few the client needs are read (see
        # cronmgr.core.locate), so that the client never loads pydantic.
        located: Located = settings if settings is not None else load_location()
        local = base_url is None or _is_local(base_url)
        base_url = base_url if base_url is not None else located.base_url
        if token is None:
            # The token file belongs to this machine's controller: never send it elsewhere.
            token = read_token(located) if local else located.api_token
    return _checked_url(base_url), token or None


def _is_local(base_url: str) -> bool:
    host = urllib.parse.urlsplit(base_url).hostname or ""
    return is_loopback(host)


def _checked_url(base_url: str) -> str:
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"invalid controller URL {base_url!r}: expected http://HOST:PORT or https://HOST:PORT"
        )
    return base_url.rstrip("/")


def _headers(token: str | None, call: Call) -> dict[str, str]:
    headers = {"Accept": "application/json, text/plain;q=0.9"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if call.body is not None:
        headers["Content-Type"] = "application/json"
    return headers


def _unreachable(base_url: str, reason: object, timeout: float) -> ControllerUnreachable:
    if isinstance(reason, TimeoutError):
        reason = f"no answer within {timeout:g} s"
    return ControllerUnreachable(
        f"cannot reach the cronmgr controller at {base_url} ({reason}); "
        "is it running? Start it with `cronmgr serve`"
    )


def _lower(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def _decode_json(reply: _Reply, call: Call) -> dict[str, Any]:
    data = _loads(reply)
    if not isinstance(data, dict):
        raise _unexpected(reply, call, "a JSON object")
    return data


def _decode_array(reply: _Reply, call: Call) -> list[Any]:
    data = _loads(reply)
    if not isinstance(data, list):
        raise _unexpected(reply, call, "a JSON array")
    return data


def _loads(reply: _Reply) -> Any:
    """The decoded body of a successful reply; None when it is not JSON."""
    _raise_for_status(reply)
    try:
        return orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return None


def _unexpected(reply: _Reply, call: Call, wanted: str) -> CronmgrError:
    error = CronmgrError(
        f"{call.method} {call.path} answered with something other than {wanted}: "
        f"{_snippet(reply.body)!r}"
    )
    return _with_status(error, reply.status)


def _following(reply: _Reply, call: Call) -> Call | None:
    """The call of the next page, which the reply names in `X-Next-Offset`; None at the end."""
    value = reply.headers.get("x-next-offset")
    if value is None:
        return None
    if not value.isdigit():
        raise _with_status(
            CronmgrError(f"{call.method} {call.path} sent X-Next-Offset {value!r}"), reply.status
        )
    return call.at_offset(int(value))


def _decode_text(reply: _Reply) -> str:
    _raise_for_status(reply)
    return reply.body.decode("utf-8", errors="replace")


def _raise_for_status(reply: _Reply) -> None:
    error = _status_error(reply)
    if error is not None:
        raise error


def _status_error(reply: _Reply) -> CronmgrError | None:
    """The exception a reply's status stands for; None for a success (2xx)."""
    if 200 <= reply.status < 300:
        return None
    detail, errors = _error_fields(reply)
    error = error_for_status(reply.status)(detail, errors=errors)
    if isinstance(error, TooManyRequests):
        wait = reply.headers.get("retry-after", "")
        error.retry_after = int(wait) if wait.isdigit() else None
    return _with_status(error, reply.status)


def _error_fields(reply: _Reply) -> tuple[str, list[dict[str, Any]]]:
    """Detail and field errors of the uniform error body; the raw text when it is not one."""
    try:
        data = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("detail"), str):
        errors = data.get("errors")
        return data["detail"], errors if isinstance(errors, list) else []
    return _snippet(reply.body) or f"HTTP {reply.status}", []


def _snippet(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    return text if len(text) <= _MAX_RAW_DETAIL else text[:_MAX_RAW_DETAIL] + "..."


def _with_status(error: CronmgrError, status: int) -> CronmgrError:
    # The class says what kind of failure it is; the instance keeps the status actually
    # received, which differs for statuses without a class of their own (502, 504, ...).
    error.status = status
    return error
