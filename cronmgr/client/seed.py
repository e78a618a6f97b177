"""`CronAPIClient`: the blocking client under the name the original Pipeline Cron Manager API
gave its client, raising errors that the scripts written against that client catch.

That client called requests' `response.raise_for_status()`, so its scripts catch
`requests.HTTPError` (and `requests.ConnectionError` when the API is down). When requests
is installed, each error this class raises is also an instance of those: the project's
class (`Conflict`, `BadRequest`, ...) with the requests class as a second base (built on
the first error, so that importing the client does not load requests), with a `response`
whose `status_code`, `headers`, `text` and `json()` are the answer's. requests stays
optional: without it the errors are the project's own classes, and
`except cronmgr.client.CronmgrError` is the one-line change for such a script.
"""

from __future__ import annotations

import functools
import http.client
from types import ModuleType
from typing import TYPE_CHECKING, TypeVar, cast

from cronmgr.client.calls import Call
from cronmgr.client.sync import Client
from cronmgr.client.transport import _Reply, _status_error
from cronmgr.core.errors import ERRORS_BY_STATUS, ControllerUnreachable, CronmgrError

if TYPE_CHECKING:
    import requests

E = TypeVar("E", bound=CronmgrError)


@functools.cache
def seed_errors() -> dict[type[CronmgrError], type[CronmgrError]]:
    """Each class the client raises -> the same class that is also a requests exception;
    empty without requests. Built on the first error, so that importing the client never
    loads requests."""
    try:
        import requests
    except ImportError:  # optional: the errors are then the project's classes alone
        return {}
    classes: list[type[CronmgrError]] = [
        CronmgrError,
        ControllerUnreachable,
        *ERRORS_BY_STATUS.values(),
    ]
    return {cls: _with_requests_base(cls, requests) for cls in classes}


def _with_requests_base(cls: type[CronmgrError], requests: ModuleType) -> type[CronmgrError]:
    """`cls` with requests' matching exception as a second base, under the same name."""
    extra = requests.ConnectionError if cls is ControllerUnreachable else requests.HTTPError
    doc = f"{cls.__name__}, also a `requests.{extra.__name__}` (see `cronmgr.client.seed`)."
    namespace = {"__module__": __name__, "__qualname__": cls.__name__, "__doc__": doc}
    return type(cls.__name__, (cls, extra), namespace)


def seed_error(error: E, reply: _Reply | None = None, url: str = "") -> E:
    """`error` as an instance of its requests-based class (its fields and the answer kept);
    `error` itself without requests, or when its class has none."""
    cls = seed_errors().get(type(error))
    if cls is None:
        return error
    seed = cast(E, cls(error.detail, errors=error.errors))
    response = _response(reply, url) if reply is not None else None
    seed.__dict__.update(vars(error), response=response, request=None)
    return seed


def _response(reply: _Reply, url: str) -> requests.Response:
    """A requests Response holding the answer, as `raise_for_status()` would have kept it."""
    import requests  # there: seed_errors() found it
    from requests.structures import CaseInsensitiveDict

    response = requests.Response()
    response.status_code = reply.status
    response.headers = CaseInsensitiveDict(reply.headers)
    response.url = url
    response.reason = http.client.responses.get(reply.status, "")
    response.encoding = "utf-8"
    response._content = reply.body  # what .content, .text and .json() read
    return response


class CronAPIClient(Client):
    """`Client` under the seed's name; its errors are also `requests.HTTPError` (or
    `requests.ConnectionError` when the controller cannot be reached) when requests is
    installed. Everything else is `Client`'s."""

    def _send(self, call: Call) -> _Reply:
        reply = super()._send(call)
        error = _status_error(reply)
        if error is not None:
            raise seed_error(error, reply, call.url(self.base_url))
        return reply

    def _open_stream(self, call: Call) -> http.client.HTTPResponse:
        try:
            return super()._open_stream(call)
        except CronmgrError as exc:
            raise seed_error(exc) from exc

    def _unreachable(self, exc: BaseException) -> ControllerUnreachable:
        return seed_error(super()._unreachable(exc))
