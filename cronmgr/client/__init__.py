"""Talk to a running controller: `Client` (blocking) and `AsyncClient` (asyncio).

`CronAPIClient` is `Client` under the name the original Pipeline Cron Manager API gave
its client, so code written against that client runs unchanged.

Every endpoint is described once, in `_Endpoints`: each method builds a `Call` (HTTP
method, path, query, body) and hands it to the transport, asking for a JSON object, a
JSON array, text, or every item of a paged list back. The transports are thin and share
the decoding, the paging and the error mapping:

- `Client` uses the standard library's `urllib.request`. Running `AsyncClient` on a private
  event loop was the alternative, but it breaks when the calling thread already runs a
  loop (an async application calling a blocking helper, a notebook), it needs care to
  close the aiohttp session on the loop that opened it, and it turns `follow_logs()` into
  a generator that drives a loop. urllib has none of that, and the CLI, which only needs
  the blocking client, never imports aiohttp.
- `AsyncClient` uses one aiohttp session, opened on first use and closed by `close()`.

Both ignore the `HTTP(S)_PROXY` variables (aiohttp does by default; urllib is told to), so
the two clients reach the same place and a proxy set for the outside world does not
swallow requests to a controller on loopback.

`follow_logs()` reads the server-sent events of `GET /api/v1/logs/stream` rather than
polling `GET /api/v1/logs`: one connection instead of a request per poll, and lines as
soon as the controller sees them. Polling would survive a dropped connection more simply,
but the stream's event ids are cursors, so a reconnection resumes exactly where the last
line left off all the same; the stream is asked for keep-alives well within the read
timeout, so a silent log never looks like a dead connection.

Paged lists (`/api/v1` targets, schedules, runs) come back one page per `list_*` call, as
the bare JSON array the API sends; `iter_*` follows the `X-Next-Offset` header from page
to page, which is why a reply keeps its headers. Datetimes given as arguments are sent
as ISO 8601 (`datetime.isoformat()`); strings are sent as they are.

Errors come back as the project's own exceptions: a non-2xx answer raises the class
`error_for_status()` picks, with the body's `detail` and `errors` and the HTTP status in
`.status`; no answer at all raises `ControllerUnreachable`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import time
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Awaitable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import time as clock_time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import orjson

from cronmgr.core.errors import (
    ConfigError,
    ControllerUnreachable,
    CronmgrError,
    TooManyRequests,
    error_for_status,
)
from cronmgr.core.locate import Located, is_loopback, load_location, read_token

if TYPE_CHECKING:
    import aiohttp

    from cronmgr.core.config import Settings

__all__ = ["AsyncClient", "Call", "Client", "CronAPIClient"]

DEFAULT_TIMEOUT = 30.0
FOLLOW_LINES = 10
FOLLOW_POLL_SECONDS = 0.5
FOLLOW_KEEPALIVE_SECONDS = 15.0
_MAX_RAW_DETAIL = 500  # characters of a non-JSON error body worth showing

J = TypeVar("J")  # what a JSON object call returns: a dict, or an awaitable of one
A = TypeVar("A")  # what a JSON array call returns: a list, or an awaitable of one
T = TypeVar("T")  # what a text call returns: a str, or an awaitable of one
P = TypeVar("P")  # what a paged list gives: a generator of its items, or an async one

Item = dict[str, Any]
Moment = datetime | str  # a datetime, or an ISO 8601 string sent as it is


@dataclass(frozen=True, slots=True)
class Call:
    """One request to the controller: method, path, query parameters and JSON body."""

    method: str
    path: str
    query: Mapping[str, str | int] = field(default_factory=dict)
    body: Mapping[str, Any] | None = None

    def url(self, base_url: str) -> str:
        """The full URL under `base_url`."""
        query = urllib.parse.urlencode(self.query)
        return base_url + self.path + (f"?{query}" if query else "")

    def content(self) -> bytes | None:
        """The encoded body, or None when the call sends none."""
        if self.body is None:
            return None
        # orjson would write datetimes itself; passing them through keeps one documented
        # rule (isoformat) for bodies and query strings alike.
        return orjson.dumps(self.body, default=_isoformat, option=orjson.OPT_PASSTHROUGH_DATETIME)

    def at_offset(self, offset: int) -> Call:
        """The same call asking for the page that starts at `offset`."""
        return dataclasses.replace(self, query={**self.query, "offset": offset})


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: bytes
    headers: Mapping[str, str]  # names in lower case


def _launch_body(interval_seconds: int | None, pipeline: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if interval_seconds is not None:
        body["interval_seconds"] = interval_seconds
    if pipeline is not None:
        body["pipeline"] = pipeline
    return body


class _Endpoints(ABC, Generic[J, A, T, P]):
    """Every endpoint, once; subclasses supply the transport.

    Resource ids are positional-only, so that `**changes` may hold any field name
    (`update_schedule(sid, target_id=...)`).
    """

    base_url: str

    def start(self, interval_seconds: int | None = None, pipeline: str | None = None) -> J:
        """Start the daemon (every `interval_seconds`, running `pipeline`); 409 if running."""
        body = _launch_body(interval_seconds, pipeline)
        return self._json(Call("POST", "/api/cron/start", body=body))

    def stop(self) -> J:
        """Stop the daemon; fine when it is not running."""
        return self._json(Call("POST", "/api/cron/stop"))

    def restart(self, interval_seconds: int | None = None, pipeline: str | None = None) -> J:
        """Stop, then start with the given settings or the last ones."""
        body = _launch_body(interval_seconds, pipeline)
        return self._json(Call("POST", "/api/cron/restart", body=body))

    def reload(self) -> J:
        """Make the daemon re-read its pipeline and reopen its log (NotFound if stopped)."""
        return self._json(Call("POST", "/api/cron/reload"))

    def status(self) -> J:
        """The daemon's state: is_running, pid, message, process and supervision details."""
        return self._json(Call("GET", "/api/cron/status"))

    def get_logs(self, lines: int | None = None) -> J:
        """The last `lines` log lines (a bounded default) as `{"logs", "line_count"}`."""
        # Like the seed's client, 0 asks for the default amount rather than for nothing.
        query: dict[str, str | int] = {"lines": lines} if lines else {}
        return self._json(Call("GET", "/api/cron/logs", query=query))

    def tail_logs(self, lines: int = 50) -> T:
        """The last `lines` log lines as plain text."""
        return self._text(Call("GET", "/api/cron/logs/tail", query={"lines": lines}))

    def clear_logs(self) -> J:
        """Empty the daemon's log file."""
        return self._json(Call("DELETE", "/api/cron/logs"))

    def health(self) -> J:
        """Whether the controller answers (no token needed)."""
        return self._json(Call("GET", "/health"))

    def log_page(
        self,
        cursor: str | None = None,
        lines: int | None = None,
        *,
        level: str | None = None,
        run_id: str | None = None,
        schedule_id: str | None = None,
        event: str | Iterable[str] | None = None,
        since: Moment | None = None,
    ) -> J:
        """Log lines after `cursor` (without one, the last `lines`) that pass the filters.

        `level` is a minimum (`"warning"`: warning, error, critical); `event` one name or
        several. The answer: `{lines, cursor, rotated, cleared, reset, more}`; pass its
        `cursor` back for the next page, at once while `more` is true.
        """
        filters = _log_filters(level, run_id, schedule_id, event, since)
        query = {**_query(cursor=cursor, lines=lines), **filters}
        return self._json(Call("GET", "/api/v1/logs", query=query))

    # --- /api/v1 targets ------------------------------------------------------------------

    def create_target(self, name: str, url: str, **fields: Any) -> J:
        """Create an HTTP target; `fields` as in the API (method, headers, retry, ...)."""
        return self._json(Call("POST", _path("targets"), body={"name": name, "url": url, **fields}))

    def list_targets(self, limit: int | None = None, offset: int | None = None) -> A:
        """One page of targets, by name; `iter_targets` follows every page."""
        return self._array(_targets(limit, offset))

    def iter_targets(self, page_size: int | None = None) -> P:
        """Every target, fetching `page_size` per request."""
        return self._pages(_targets(page_size, None))

    def get_target(self, target_id: str, /) -> J:
        """One target (credential headers and URL secrets shown as `***`)."""
        return self._json(Call("GET", _path("targets", target_id)))

    def update_target(self, target_id: str, /, **changes: Any) -> J:
        """Change the given fields (JSON merge patch: None resets a field to its default)."""
        return self._json(Call("PATCH", _path("targets", target_id), body=changes))

    def delete_target(self, target_id: str, /, cascade: bool = False) -> J:
        """Delete a target; Conflict while schedules use it, unless `cascade` deletes them."""
        query: dict[str, str | int] = {"cascade": "true"} if cascade else {}
        return self._json(Call("DELETE", _path("targets", target_id), query=query))

    # --- /api/v1 schedules ----------------------------------------------------------------

    def create_schedule(self, name: str, schedule_type: str, **fields: Any) -> J:
        """Create a schedule; `fields` as in the API (target_id or pipeline, timing, ...)."""
        body = {"name": name, "schedule_type": schedule_type, **fields}
        return self._json(Call("POST", _path("schedules"), body=body))

    def list_schedules(
        self,
        status: str | None = None,
        target_id: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> A:
        """One page of schedules, by name, filtered; `iter_schedules` follows every page."""
        return self._array(_schedules(status, target_id, limit, offset))

    def iter_schedules(
        self, status: str | None = None, target_id: str | None = None, page_size: int | None = None
    ) -> P:
        """Every schedule that passes the filters, fetching `page_size` per request."""
        return self._pages(_schedules(status, target_id, page_size, None))

    def get_schedule(self, schedule_id: str, /) -> J:
        """One schedule: definition, status and the engine's bookkeeping."""
        return self._json(Call("GET", _path("schedules", schedule_id)))

    def update_schedule(self, schedule_id: str, /, **changes: Any) -> J:
        """Change the given fields (JSON merge patch); the status is kept."""
        return self._json(Call("PATCH", _path("schedules", schedule_id), body=changes))

    def delete_schedule(self, schedule_id: str, /) -> J:
        """Delete a schedule; its runs stay."""
        return self._json(Call("DELETE", _path("schedules", schedule_id)))

    def pause_schedule(self, schedule_id: str, /) -> J:
        """Stop a schedule firing; Conflict when it is completed."""
        return self._json(Call("POST", _path("schedules", schedule_id, "pause")))

    def resume_schedule(self, schedule_id: str, /) -> J:
        """Make a schedule fire again, its failure count and circuit breaker reset."""
        return self._json(Call("POST", _path("schedules", schedule_id, "resume")))

    def next_runs(self, schedule_id: str, /, count: int = 5) -> A:
        """The next `count` fire times (ISO 8601 strings in the schedule's timezone)."""
        query = {"count": count}
        return self._array(Call("GET", _path("schedules", schedule_id, "next"), query=query))

    # --- /api/v1 runs ---------------------------------------------------------------------

    def list_runs(
        self,
        schedule_id: str | None = None,
        status: str | None = None,
        since: Moment | None = None,
        target_id: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> A:
        """One page of runs (without steps), newest first; `iter_runs` follows every page."""
        return self._array(_runs(schedule_id, status, since, target_id, limit, offset))

    def iter_runs(
        self,
        schedule_id: str | None = None,
        status: str | None = None,
        since: Moment | None = None,
        target_id: str | None = None,
        page_size: int | None = None,
    ) -> P:
        """Every run that passes the filters, newest first, fetching `page_size` per request.

        Offset paging: a run recorded while you iterate shifts the later pages by one, so
        the run at a page boundary can come twice.
        """
        return self._pages(_runs(schedule_id, status, since, target_id, page_size, None))

    def get_run(self, run_id: str, /) -> J:
        """One run with its steps and every attempt of each."""
        return self._json(Call("GET", _path("runs", run_id)))

    # --- /api/v1 pipelines, the OpenAPI document ------------------------------------------

    def list_pipelines(self) -> A:
        """Every pipeline that loaded: name, description, step_count, file."""
        return self._array(Call("GET", _path("pipelines")))

    def get_pipeline(self, name: str, /) -> J:
        """One pipeline with its steps (of each step's environment only the names)."""
        return self._json(Call("GET", _path("pipelines", name)))

    def run_pipeline(self, name: str, /) -> J:
        """Ask the daemon to run a pipeline now: the pending run (202); Conflict (409)
        when its overlap policy forbids a second run or the daemon is not running."""
        return self._json(Call("POST", _path("pipelines", name, "run")))

    # --- observability ----------------------------------------------------------------

    def metrics(self, window_hours: int | None = None) -> J:
        """Per schedule, target and pipeline: runs, success rate, percentiles, availability;
        the daemon's rate, lag and queue depth (`GET /api/v1/metrics`)."""
        return self._json(Call("GET", "/api/v1/metrics", query=_query(window_hours=window_hours)))

    def prometheus_metrics(self) -> T:
        """The same figures in Prometheus text exposition."""
        return self._text(Call("GET", "/api/v1/metrics/prometheus"))

    def list_incidents(
        self,
        status: str | None = None,
        *,
        job: str | None = None,
        target_id: str | None = None,
        pipeline: str | None = None,
        since: Moment | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> A:
        """One page of incidents (downtime windows), newest first, filtered."""
        query = _query(
            status=status,
            job=job,
            target_id=target_id,
            pipeline=pipeline,
            since=since,
            limit=limit,
            offset=offset,
        )
        return self._array(Call("GET", _path("incidents"), query=query))

    def test_notifications(self, webhook: str | None = None) -> J:
        """Send a `test` event to every webhook (or the one named); the delivery results."""
        query = _query(webhook=webhook)
        return self._json(Call("POST", "/api/v1/notifications/test", query=query))

    def openapi(self) -> J:
        """The controller's OpenAPI 3.1 document."""
        return self._json(Call("GET", "/openapi.json"))

    # --- what the transports supply -------------------------------------------------------

    @abstractmethod
    def _json(self, call: Call) -> J:
        """Send `call`; its decoded JSON object."""

    @abstractmethod
    def _array(self, call: Call) -> A:
        """Send `call`; its decoded JSON array."""

    @abstractmethod
    def _text(self, call: Call) -> T:
        """Send `call`; its body as text."""

    @abstractmethod
    def _pages(self, call: Call) -> P:
        """Send `call`, then the call of each next page; the items of every page."""


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


CronAPIClient = Client
"""The seed API's name for the blocking client: `CronAPIClient()` works as it documents."""


class AsyncClient(
    _Endpoints[
        Awaitable[dict[str, Any]], Awaitable[list[Any]], Awaitable[str], AsyncGenerator[Item, None]
    ]
):
    """An asyncio client of the controller's API; the same calls as `Client`, awaited.

    Arguments as for `Client`. The aiohttp session opens on the first call; close it with
    `await client.close()` or `async with AsyncClient() as client`.
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
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session, if one was opened."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def follow_logs(
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
    ) -> AsyncGenerator[str, None]:
        """The last `lines` log lines (or those after `cursor`), then each new one, until you stop.

        As `Client.follow_logs`: the event stream, reconnecting from the last line got.
        """
        filters = _log_filters(level, run_id, schedule_id, event, since)
        follower = _LogStream(lines, cursor, filters, _keepalive(self.timeout))
        while True:
            async for raw in self._stream(follower.call()):
                line = follower.feed(raw)
                if line is not None:
                    yield line
            follower.broken()
            await asyncio.sleep(poll_seconds)

    async def _json(self, call: Call) -> dict[str, Any]:
        return _decode_json(await self._send(call), call)

    async def _array(self, call: Call) -> list[Any]:
        return _decode_array(await self._send(call), call)

    async def _text(self, call: Call) -> str:
        return _decode_text(await self._send(call))

    async def _pages(self, call: Call) -> AsyncGenerator[Item, None]:
        following: Call | None = call
        while following is not None:
            reply = await self._send(following)
            for item in _decode_array(reply, following):
                yield item
            following = _following(reply, following)

    async def _send(self, call: Call) -> _Reply:
        import aiohttp

        session = self._open_session()
        url, content = call.url(self.base_url), call.content()
        try:
            async with session.request(
                call.method, url, data=content, headers=_headers(self._token, call)
            ) as response:
                body = await response.read()
                return _Reply(response.status, body, _lower(response.headers.items()))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreachable(self.base_url, exc, self.timeout) from exc

    async def _stream(self, call: Call) -> AsyncGenerator[bytes, None]:
        """The lines of an event stream until the connection ends, dropped ones too."""
        import aiohttp

        session = self._open_session()
        # No total: a stream lasts. A read that waits longer than the timeout means the
        # connection is gone (the server sends keep-alives well within it).
        timeout = aiohttp.ClientTimeout(sock_connect=self.timeout, sock_read=self.timeout)
        headers = {**_headers(self._token, call), "Accept": "text/event-stream"}
        try:
            response = await session.get(call.url(self.base_url), headers=headers, timeout=timeout)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreachable(self.base_url, exc, self.timeout) from exc
        async with response:
            if not 200 <= response.status < 300:
                reply = _Reply(
                    response.status, await response.read(), _lower(response.headers.items())
                )
                _raise_for_status(reply)
            buffer = b""
            try:
                # Split by hand rather than readline(): that has a line length limit.
                async for chunk in response.content.iter_any():
                    *lines, buffer = (buffer + chunk).split(b"\n")
                    for raw in lines:
                        yield raw
            except (aiohttp.ClientError, TimeoutError):
                return  # dropped: the caller reconnects

    def _open_session(self) -> aiohttp.ClientSession:
        # aiohttp is imported here so that the blocking client never pays for it.
        import aiohttp

        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session


# --- building calls -----------------------------------------------------------------------


def _path(*segments: str) -> str:
    """`/api/v1/` and the segments, each percent-encoded so that no id can change the route."""
    return "/api/v1/" + "/".join(urllib.parse.quote(s, safe="") for s in segments)


def _query(**params: str | int | datetime | None) -> dict[str, str | int]:
    """The given query parameters, None left out, datetimes as ISO 8601."""
    return {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in params.items()
        if value is not None
    }


def _targets(limit: int | None, offset: int | None) -> Call:
    return Call("GET", _path("targets"), query=_query(limit=limit, offset=offset))


def _schedules(
    status: str | None, target_id: str | None, limit: int | None, offset: int | None
) -> Call:
    query = _query(status=status, target_id=target_id, limit=limit, offset=offset)
    return Call("GET", _path("schedules"), query=query)


def _runs(
    schedule_id: str | None,
    status: str | None,
    since: Moment | None,
    target_id: str | None,
    limit: int | None,
    offset: int | None,
) -> Call:
    query = _query(
        schedule_id=schedule_id,
        status=status,
        since=since,
        target_id=target_id,
        limit=limit,
        offset=offset,
    )
    return Call("GET", _path("runs"), query=query)


def _isoformat(value: object) -> str:
    """orjson's `default`: datetimes, dates and times as ISO 8601."""
    if isinstance(value, datetime | date | clock_time):
        return value.isoformat()
    raise TypeError(f"cannot send a {type(value).__name__} as JSON")


# --- shared by both transports -------------------------------------------------------------


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
    if 200 <= reply.status < 300:
        return
    detail, errors = _error_fields(reply)
    error = error_for_status(reply.status)(detail, errors=errors)
    if isinstance(error, TooManyRequests):
        wait = reply.headers.get("retry-after", "")
        error.retry_after = int(wait) if wait.isdigit() else None
    raise _with_status(error, reply.status)


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


# --- following the log ---------------------------------------------------------------------


def _log_filters(
    level: str | None,
    run_id: str | None,
    schedule_id: str | None,
    event: str | Iterable[str] | None,
    since: Moment | None,
) -> dict[str, str | int]:
    """The log endpoints' filter parameters; several events go as one comma list."""
    events = event if event is None or isinstance(event, str) else ",".join(event)
    return _query(level=level, run_id=run_id, schedule_id=schedule_id, event=events, since=since)


def _keepalive(timeout: float) -> float:
    """The keep-alive period to ask a stream for: well within the client's read timeout."""
    return min(FOLLOW_KEEPALIVE_SECONDS, max(0.1, timeout / 3))


class _LogStream:
    """A `follow_logs()` loop's state across connections: its query and the last event id.

    Reads the server-sent events of `GET /api/v1/logs/stream` line by line: the lines of
    the log are the `data` of the unnamed events; named ones (`rotated`, `cleared`) and
    comments only inform. Every event's `id` is the cursor after it, so a new connection
    starts exactly after the last event received, never after half of one.
    """

    def __init__(
        self, lines: int, cursor: str | None, filters: Mapping[str, str | int], keepalive: float
    ) -> None:
        self.last_id = cursor
        self._lines = lines
        self._query = {**filters, "keepalive_seconds": f"{keepalive:g}"}
        self._id: str | None = None
        self._kind = ""
        self._data: list[str] = []

    def call(self) -> Call:
        """The request that starts (or resumes) the stream."""
        start = {"lines": self._lines} if self.last_id is None else {"cursor": self.last_id}
        return Call("GET", "/api/v1/logs/stream", query={**self._query, **start})

    def feed(self, raw: bytes) -> str | None:
        """One line of the stream; the log line when it completes an event that carries one."""
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not text:
            return self._dispatch()
        name, _, value = text.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        elif name == "event":
            self._kind = value
        return None  # a comment (keep-alive), `retry`, or a field still being gathered

    def broken(self) -> None:
        """The connection ended: what it sent of an unfinished event is dropped."""
        self._id, self._kind, self._data = None, "", []

    def _dispatch(self) -> str | None:
        data, kind = self._data, self._kind
        if self._id is not None:
            self.last_id = self._id
        self.broken()
        return "\n".join(data) if data and kind in ("", "message") else None
