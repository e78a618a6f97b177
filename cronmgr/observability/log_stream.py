"""`stream()` turns pages of the log into server-sent events for
`GET /api/v1/logs/stream`: one event per line whose id is the cursor after it, an event
where the log was rotated or cleared, keep-alive comments while it is quiet, and one
`unreadable` event while the log can't be read."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path

import orjson

from cronmgr.core.supervision import Faults, describe
from cronmgr.observability.log_cursor import Cursor, LogFilter
from cronmgr.observability.log_pages import LogLine, LogPage, read_page

STREAM_POLL_SECONDS = 0.2
"""How often an event stream looks for new lines when it has caught up."""

STREAM_RETRY_MS = 1000
"""The reconnection delay an event stream asks its client for."""


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """What an event stream follows: from where, which lines, and how it keeps alive."""

    path: Path
    start: Cursor | None
    keep: LogFilter
    initial_lines: int = 10
    keepalive_seconds: float = 15.0
    poll_seconds: float = STREAM_POLL_SECONDS


async def stream(spec: StreamSpec, closing: asyncio.Event) -> AsyncGenerator[bytes, None]:
    """The log as server-sent events, until `closing` is set.

    The first chunk (the reconnection delay and the first page) comes without waiting,
    even when `closing` is set already.

    Each line is an event whose `id` is the cursor after it, so a client that reconnects
    with `Last-Event-ID` goes on exactly there. A rotation or clear is an event of its own
    (`rotated`, `cleared`) where it happened. When lines that the filter drops move the
    cursor past the last event, an event with only an `id` follows, which a client takes
    as its new position without showing anything. A comment keeps a quiet stream alive.
    A log that can't be read makes one `unreadable` event (and one `task_failed` line a
    minute); the stream stays open and goes on once it can be read again.
    """
    cursor, last_id, quiet_since = spec.start, None, time.monotonic()
    retry = f"retry: {STREAM_RETRY_MS}\n\n".encode()
    faults = Faults("log_stream", path=str(spec.path))
    while True:
        page = await _read_or_report(spec, cursor, faults)
        if isinstance(page, LogPage):
            cursor = page.cursor
            chunk, last_id = encode_page(page, last_id)
        else:
            chunk = page
        chunk, retry = retry + chunk, b""  # the first chunk: the first page, read at once
        if not chunk and time.monotonic() - quiet_since >= spec.keepalive_seconds:
            chunk = b": keep-alive\n\n"
        if chunk:
            yield chunk
            quiet_since = time.monotonic()
        if closing.is_set():  # checked after a read: what was written until then is sent
            return
        if not isinstance(page, LogPage) or not page.more:
            wait = faults.pause if faults.failing else spec.poll_seconds
            await _pause(closing, min(wait, spec.keepalive_seconds))


async def _read_or_report(
    spec: StreamSpec, cursor: Cursor | None, faults: Faults
) -> LogPage | bytes:
    """The next page; when the log can't be read, an `unreadable` event the first time."""
    try:
        page = await asyncio.to_thread(
            read_page, spec.path, cursor, spec.keep, initial_lines=spec.initial_lines
        )
    except Exception as exc:  # a log made unreadable: the stream waits for it to heal
        first = not faults.failing
        faults.failed(exc)
        if not first:
            return b""
        return b"event: unreadable\ndata: " + orjson.dumps({"error": describe(exc)}) + b"\n\n"
    faults.succeeded()
    return page


def encode_page(page: LogPage, last_id: str | None) -> tuple[bytes, str | None]:
    """The events of `page`, and the id the client has after them."""
    events = [_line_event(line) for line in page.lines]
    notice = _notice_event(page)
    if notice:
        events.insert(page.turn, notice)
    if page.lines:
        last_id = str(page.lines[-1].cursor)
    final = str(page.cursor)
    if final != last_id:
        events.append(f"id: {final}\n\n".encode())
        last_id = final
    return b"".join(events), last_id


def _line_event(line: LogLine) -> bytes:
    # A carriage return ends a field in an event stream: one is sent as a line break.
    data = "".join(f"data: {part}\n" for part in re.split(r"\r\n?", line.text))
    return f"id: {line.cursor}\n{data}\n".encode()


def _notice_event(page: LogPage) -> bytes:
    kind = "cleared" if page.cleared else "rotated" if page.rotated else None
    if kind is None:
        return b""
    flags = {"rotated": page.rotated, "cleared": page.cleared, "reset": page.reset}
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(flags) + b"\n\n"


async def _pause(closing: asyncio.Event, seconds: float) -> None:
    """Wait `seconds`, or less when `closing` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await closing.wait()
