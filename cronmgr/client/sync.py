"""`Client`, the blocking client, on the standard library's `urllib.request` (without the
environment's proxies); `CronAPIClient`, under the original Pipeline Cron Manager API's
name, is in `cronmgr.client.seed`."""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Generator, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from cronmgr.client.calls import Call, Item, Moment
from cronmgr.client.endpoints import _Endpoints
from cronmgr.client.follow import (
    FOLLOW_LINES,
    FOLLOW_POLL_SECONDS,
    _keepalive,
    _log_filters,
    _LogStream,
)
from cronmgr.client.transport import (
    DEFAULT_TIMEOUT,
    _decode_array,
    _decode_json,
    _decode_text,
    _following,
    _headers,
    _lower,
    _raise_for_status,
    _Reply,
    _resolve,
    _unexpected,
    _unreachable,
)
from cronmgr.core.errors import ControllerUnreachable

if TYPE_CHECKING:
    from cronmgr.core.config import Settings


class Client(_Endpoints[dict[str, Any], list[Any], str, Generator[Item, None, None]]):
    """A blocking client of the controller's API.

    `base_url` defaults to the configured controller (`settings.base_url`; without
    `settings`, the same file and `CRONMGR_*` variables `load_settings()` reads, through
    `cronmgr.core.locate.load_location()`); the token to an explicit `token`, else the
    configured `CRONMGR_API_TOKEN`, else the controller's token file.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        settings: Settings | None = None,
    ) -> None:
        self.base_url, self._token = _resolve(base_url, token, settings)
        self.timeout = timeout
        # An opener without the environment's proxies (see the module docstring).
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release resources; nothing stays open between calls, so this is a formality."""

    def follow_logs(
        self,
        lines: int = FOLLOW_LINES,
        *,
        level: str | None = None,
        run_id: str | None = None,
        schedule_id: str | None = None,
        event: str | Iterable[str] | None = None,
        since: Moment | None = None,
        cursor: str | None = None,
        poll_seconds: float = FOLLOW_POLL_SECONDS,
    ) -> Generator[str, None, None]:
        """The last `lines` log lines (or those after `cursor`), then each new one, until you stop.

        Filters as for `log_page`. Reads the event stream `GET /api/v1/logs/stream`,
        which follows the log across rotations and clears; when the connection drops it
        reconnects after `poll_seconds` from the last line it got, and raises
        ControllerUnreachable when the controller is gone.
        """
        filters = _log_filters(level, run_id, schedule_id, event, since)
        follower = _LogStream(lines, cursor, filters, _keepalive(self.timeout))
        while True:
            for raw in self._stream(follower.call()):
                line = follower.feed(raw)
                if line is not None:
                    yield line
            follower.broken()
            time.sleep(poll_seconds)

    def _json(self, call: Call) -> dict[str, Any]:
        return _decode_json(self._send(call), call)

    def _array(self, call: Call) -> list[Any]:
        return _decode_array(self._send(call), call)

    def _text(self, call: Call) -> str:
        return _decode_text(self._send(call))

    def _pages(self, call: Call) -> Generator[Item, None, None]:
        following: Call | None = call
        while following is not None:
            reply = self._send(following)
            yield from _decode_array(reply, following)
            following = _following(reply, following)

    def _stream(self, call: Call) -> Generator[bytes, None, None]:
        """The lines of an event stream until the connection ends, dropped ones too."""
        with self._open_stream(call) as response:
            while True:
                try:
                    raw = response.readline()
                except (OSError, http.client.HTTPException):
                    return  # reset, or silent past the timeout: the caller reconnects
                if not raw:
                    return
                yield raw

    def _open_stream(self, call: Call) -> http.client.HTTPResponse:
        headers = {**_headers(self._token, call), "Accept": "text/event-stream"}
        request = urllib.request.Request(call.url(self.base_url), headers=headers)
        try:
            response: http.client.HTTPResponse = self._opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            with exc:
                reply = _Reply(exc.code, exc.read(), _lower(exc.headers.items()))
            _raise_for_status(reply)
            raise _unexpected(reply, call, "an event stream") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from exc
        return response

    def _send(self, call: Call) -> _Reply:
        request = urllib.request.Request(
            call.url(self.base_url),
            data=call.content(),
            headers=_headers(self._token, call),
            method=call.method,
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return _Reply(response.status, response.read(), _lower(response.headers.items()))
        except urllib.error.HTTPError as exc:
            with exc:
                return _Reply(exc.code, exc.read(), _lower(exc.headers.items()))
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: BaseException) -> ControllerUnreachable:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return _unreachable(self.base_url, reason, self.timeout)
