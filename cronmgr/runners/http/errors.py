"""The error class of a failed request, and the words for the attempt's record.

`classify_error` sorts what the lean client (or the OS under it) raised into the error
classes a run records - timeout, TLS, DNS, connection, unknown - by the first matching
row of its table, and says in a sentence what happened, without the secrets of the URL.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Callable

from cronmgr.core.models import ErrorType, Target
from cronmgr.runners.http import wire as wire
from cronmgr.runners.http.request import CONNECT_TIMEOUT_SECONDS, MAX_REDIRECTS

_Describe = Callable[[BaseException, Target], str]


def classify_error(exc: BaseException, target: Target) -> tuple[ErrorType, str]:
    """The error class of a failed request and a message saying what happened."""
    for kinds, error_type, describe in _CLASSES:
        if isinstance(exc, kinds) or (error_type is ErrorType.DNS and _caused_by_gaierror(exc)):
            return error_type, describe(exc, target)
    return ErrorType.UNKNOWN, f"{type(exc).__name__}: {exc}"


def _timeout_message(exc: BaseException, target: Target) -> str:
    if isinstance(exc, wire.ConnectTimeout):
        connect = min(target.timeout_seconds, CONNECT_TIMEOUT_SECONDS)
        return f"timed out connecting, after {connect:g} s"
    return f"timed out after {target.timeout_seconds:g} s"


def _ssl_message(exc: BaseException, target: Target) -> str:
    if isinstance(exc, wire.TLSFailed):
        if exc.certificate:
            return f"TLS certificate of {exc.host} rejected: {_reason(exc.os_error)}"
        return f"TLS handshake with {exc.host} failed: {_reason(exc.os_error)}"
    return f"TLS failure: {_reason(exc)}"


def _dns_message(exc: BaseException, target: Target) -> str:
    if isinstance(exc, wire.ResolveFailed):
        return f"cannot resolve host {exc.host!r}: {_reason(exc.os_error)}"
    return f"cannot resolve host: {_reason(exc)}"


def _connection_message(exc: BaseException, target: Target) -> str:
    if isinstance(exc, wire.ConnectFailed):
        error = exc.os_error
        # asyncio words a refusal "Connect call failed (...)"; the errno says it plainly.
        reason = os.strerror(error.errno) if error.errno else _reason(error)
        return f"cannot connect to {exc.host}:{exc.port}: {reason}"
    if isinstance(exc, wire.Disconnected):
        return "the server closed the connection before a complete response"
    if isinstance(exc, wire.Malformed):
        return f"the answer is not HTTP: {exc}"
    if isinstance(exc, wire.BodyBroken):
        return f"the response body broke off: {_reason(exc)}"
    if isinstance(exc, wire.HeadTooLarge):
        return f"response refused, connection dropped: {exc}"
    return f"connection failed: {_reason(exc)}"


def _redirects_message(exc: BaseException, target: Target) -> str:
    return f"more than {MAX_REDIRECTS} redirects"


def _invalid_url_message(exc: BaseException, target: Target) -> str:
    return str(exc)


# First match wins; the order matters: ssl.SSLError and socket.gaierror are OSErrors too,
# and a connect timeout is a TimeoutError, which is an OSError as well.
_CLASSES: tuple[
    tuple[type[BaseException] | tuple[type[BaseException], ...], ErrorType, _Describe], ...
] = (
    (TimeoutError, ErrorType.TIMEOUT, _timeout_message),
    ((ssl.SSLError, wire.TLSFailed), ErrorType.SSL, _ssl_message),
    (wire.ResolveFailed, ErrorType.DNS, _dns_message),
    (
        (
            OSError,
            wire.ConnectFailed,
            wire.Disconnected,
            wire.BodyBroken,  # Malformed among them
            # As a malformed response is: the target did not answer in HTTP this client
            # takes, which says no more about the service than a broken connection does.
            wire.HeadTooLarge,
        ),
        ErrorType.CONNECTION,
        _connection_message,
    ),
    (wire.TooManyRedirects, ErrorType.UNKNOWN, _redirects_message),
    (wire.UnsupportedURL, ErrorType.UNKNOWN, _invalid_url_message),
)


def _caused_by_gaierror(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, socket.gaierror):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
