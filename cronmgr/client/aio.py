"""`AsyncClient`, the asyncio client: the same calls as `Client`, awaited, over one
aiohttp session that opens on first use (aiohttp is imported only then, so that the
blocking client never pays for it) and closes with `close()`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Iterable
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
    _unreachable,
)

if TYPE_CHECKING:
    import aiohttp

    from cronmgr.core.config import Settings


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
