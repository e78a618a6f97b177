"""Following the log: cursors that name a file and an offset, filters, pages, event streams.

The daemon appends to `cronmgr.log` and rotates it by renaming (`cronmgr.log` becomes
`cronmgr.log.1`, `.1` becomes `.2`, ...); the controller clears it by truncating it in
place. A follower holds a `Cursor`: the inode of the file it read last, the offset after
the last whole line it got there, and a checksum of that file's first bytes.

`read_page()` finds the cursor's file again by its inode, the live file or a backup. A
cursor in a backup means the file was rotated since: the rest of it is read, then the
newer files in turn, so a rotation loses no line. A live file shorter than the offset,
or whose first bytes no longer match the checksum, was cleared since (the checksum
catches a file that was cleared and has grown past the offset again). A cursor whose file
is gone altogether (rotated out of the kept backups, or removed by a clear) goes on at
the oldest file still there.

One page reads at most `PAGE_MAX_BYTES`, lines that the filter drops included, so a
filter never makes one request scan an unbounded amount: the cursor moves past all that
was read, and `more` says to ask again at once.

`stream()` turns pages into server-sent events for `GET /api/v1/logs/stream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import zlib
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, get_args

import orjson

from cronmgr.core.specs.queries import LOG_CURSOR_PATTERN, LogLevel
from cronmgr.core.supervision import Faults, describe
from cronmgr.observability import logs

PAGE_MAX_BYTES = 1024 * 1024
"""Most bytes of log one page reads, whether its lines pass the filter or not."""

CHECK_BYTES = 64 * 1024
"""How much of a file's start a cursor's checksum covers (more than the longest line)."""

STREAM_POLL_SECONDS = 0.2
"""How often an event stream looks for new lines when it has caught up."""

STREAM_RETRY_MS = 1000
"""The reconnection delay an event stream asks its client for."""

_CURSOR = re.compile(LOG_CURSOR_PATTERN)

LEVELS: tuple[str, ...] = get_args(LogLevel)
"""The levels from the least to the most severe."""
_LEVEL_RANK = {name: rank for rank, name in enumerate(LEVELS)}
# Other names a line's `level` may have: structlog writes some methods' own names.
_LEVEL_RANK |= {
    alias: _LEVEL_RANK[level]
    for alias, level in (("warn", "warning"), ("exception", "error"), ("fatal", "critical"))
}


@dataclass(frozen=True, slots=True)
class Cursor:
    """A place in the log: a file (by inode), a byte offset in it, and that file's checksum.

    Written `<inode>:<offset>:<check>`, the check being the CRC-32 (8 hex digits) of the
    file's first `min(offset, CHECK_BYTES)` bytes. The older form `<inode>:<offset>`
    is still read; without a check, only a file shorter than the offset counts as
    cleared. Inode 0 stands for "no log file existed yet". A cursor at offset 0 checks
    nothing: should its file be deleted and the inode reused by a newer file, reading
    goes on in that one.
    """

    inode: int
    offset: int
    check: int | None = None

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """The cursor written as `text`; ValueError when it is not of that form."""
        match = _CURSOR.fullmatch(text)
        if match is None:
            raise ValueError(f"cursor {text!r} is not of the form <inode>:<offset>:<check>")
        inode, offset, check = match.groups()
        return cls(int(inode), int(offset), int(check, 16) if check else None)

    def __str__(self) -> str:
        text = f"{self.inode}:{self.offset}"
        return text if self.check is None else f"{text}:{self.check:08x}"


NOWHERE = Cursor(0, 0, 0)
"""The cursor of a log that does not exist yet."""


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which lines a follower wants; with nothing set, every line passes.

    `level` is a minimum (`warning` passes warning, error and critical); `events` passes
    any of its names; `since` passes lines stamped at or after it. A line that is not a
    JSON object passes only when nothing is set.
    """

    level: str | None = None
    run_id: str | None = None
    schedule_id: str | None = None
    events: frozenset[str] = frozenset()
    since: datetime | None = None

    def is_empty(self) -> bool:
        """Whether every line passes."""
        return not (self.level or self.run_id or self.schedule_id or self.events or self.since)

    def matches(self, line: bytes) -> bool:
        """Whether the raw `line` passes."""
        if self.is_empty():
            return True
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(record, dict):
            return False
        return self._fields_match(record) and self._level_ok(record) and self._since_ok(record)

    def _fields_match(self, record: dict[str, Any]) -> bool:
        for name, wanted in (("run_id", self.run_id), ("schedule_id", self.schedule_id)):
            if wanted is not None and record.get(name) != wanted:
                return False
        event = record.get("event")
        return not self.events or (isinstance(event, str) and event in self.events)

    def _level_ok(self, record: dict[str, Any]) -> bool:
        if self.level is None:
            return True
        level = record.get("level")
        rank = _LEVEL_RANK.get(level, -1) if isinstance(level, str) else -1
        return rank >= _LEVEL_RANK[self.level]

    def _since_ok(self, record: dict[str, Any]) -> bool:
        if self.since is None:
            return True
        stamp = record.get("timestamp")
        if not isinstance(stamp, str):
            return False
        try:
            when = datetime.fromisoformat(stamp)
        except ValueError:
            return False
        return (when if when.tzinfo else when.replace(tzinfo=UTC)) >= self.since


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of a page and the cursor just after it."""

    text: str
    cursor: Cursor


@dataclass(frozen=True, slots=True)
class LogPage:
    """What one read found: the lines that passed, where to go on, and what happened.

    `rotated`: the page went from the cursor's file into a newer one (the rest of the old
    file came first), or the cursor's file is gone. `cleared`: the cursor's file was
    emptied in place since; reading started again at its first line. `reset`: the cursor's
    position no longer existed (cleared, or rotated out of the kept backups), so lines may
    be missing. `more`: the page stopped at its size limit; ask again at once. `turn`: how
    many of `lines` come before the rotation or clear.
    """

    lines: list[LogLine]
    cursor: Cursor
    rotated: bool = False
    cleared: bool = False
    reset: bool = False
    more: bool = False
    turn: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The page as `GET /api/v1/logs` answers it."""
        return {
            "lines": [line.text for line in self.lines],
            "cursor": str(self.cursor),
            "rotated": self.rotated,
            "cleared": self.cleared,
            "reset": self.reset,
            "more": self.more,
        }


def read_page(
    path: Path, cursor: Cursor | None, keep: LogFilter | None = None, *, initial_lines: int = 10
) -> LogPage:
    """The lines of the log at `path` after `cursor` that `keep` passes.

    Without a cursor: the last `initial_lines` such lines of the live file (found within
    the last `PAGE_MAX_BYTES`), and the cursor at its end.
    """
    keep = keep or LogFilter()
    with _Files(path) as files:
        if cursor is None:
            return _initial_page(files, keep, initial_lines)
        return _page_after(files, cursor, keep)


# --- finding the files ------------------------------------------------------------------


@dataclass(slots=True)
class _File:
    """One opened log file. A backup was rotated away: it gets no more lines."""

    fd: int
    inode: int
    size: int
    backup: bool
    head: bytes | None = field(default=None, repr=False)
    crc_at: int = 0
    crc: int = 0

    def check(self, offset: int) -> int:
        """The checksum a cursor at `offset` carries: CRC-32 of the first bytes up to it."""
        upto = min(offset, CHECK_BYTES)
        if upto < self.crc_at:  # asked for an earlier offset: start over
            self.crc_at, self.crc = 0, 0
        if upto > self.crc_at:
            head = self._head(upto)
            self.crc = zlib.crc32(head[self.crc_at : upto], self.crc)
            self.crc_at = upto
        return self.crc

    def _head(self, upto: int) -> bytes:
        # Read again when the file has grown past what was read: a short head would give
        # a wrong checksum, which the next page would take for a clear.
        if self.head is None or len(self.head) < upto:
            self.head = os.pread(self.fd, CHECK_BYTES, 0)
        return self.head


class _Files:
    """The live log, then its backups newest first, opened only as far as needed."""

    def __init__(self, path: Path) -> None:
        self.opened: list[_File] = []
        self._pending = _candidates(path)

    def __enter__(self) -> _Files:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for opened in self.opened:
            os.close(opened.fd)

    def newest(self) -> _File | None:
        """The live file; the newest backup while a rotation has not yet made a new one."""
        if not self.opened:
            self._open_next()
        return self.opened[0] if self.opened else None

    def find(self, inode: int) -> int | None:
        """The index (0 is the newest) of the file with `inode`, if it is still there."""
        index = 0
        while index < len(self.opened) or self._open_next():
            if self.opened[index].inode == inode:
                return index
            index += 1
        return None

    def oldest(self) -> int | None:
        """The index of the oldest file there is."""
        while self._open_next():
            pass
        return len(self.opened) - 1 if self.opened else None

    def _open_next(self) -> bool:
        for candidate, backup in self._pending:
            try:
                fd = os.open(candidate, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            stat = os.fstat(fd)
            # A rotation while the names are opened one by one can show a file twice
            # (as the live file, then as .1): the first, newer place counts.
            if any(f.inode == stat.st_ino for f in self.opened):
                os.close(fd)
                continue
            self.opened.append(_File(fd, stat.st_ino, stat.st_size, backup))
            return True
        return False


def _candidates(path: Path) -> Iterator[tuple[Path, bool]]:
    """The live file's path, then the backups' by number; listed only when asked for."""
    yield path, False
    for backup in sorted(logs.backups(path), key=lambda p: int(p.suffix[1:])):
        yield backup, True


# --- reading forwards ---------------------------------------------------------------------


@dataclass(slots=True)
class _Reading:
    """A forward read in progress: where it is, what it found, what budget is left."""

    index: int
    offset: int
    lines: list[LogLine] = field(default_factory=list)
    left: int = PAGE_MAX_BYTES
    turn: int | None = None
    more: bool = False


def _page_after(files: _Files, cursor: Cursor, keep: LogFilter) -> LogPage:
    index = files.find(cursor.inode) if cursor.inode else None
    if index is not None:
        found = files.opened[index]
        if _still_there(found, cursor):
            return _forward(files, _Reading(index, cursor.offset), keep)
        if not found.backup:  # the live file, emptied in place since
            page = _forward(files, _Reading(index, 0), keep)
            return _flagged(page, cleared=True)
    oldest = files.oldest()
    if oldest is None:  # no log at all any more
        return LogPage([], NOWHERE, cleared=cursor.offset > 0, reset=cursor.offset > 0)
    page = _forward(files, _Reading(oldest, 0), keep)
    # Inode 0: the follower started before there was a log, so nothing was missed.
    return page if cursor.inode == 0 else _flagged(page, rotated=True)


def _still_there(found: _File, cursor: Cursor) -> bool:
    """Whether the cursor's position still holds what it held when the cursor was made."""
    if found.size < cursor.offset:
        return False
    return cursor.check is None or found.check(cursor.offset) == cursor.check


def _flagged(page: LogPage, *, rotated: bool = False, cleared: bool = False) -> LogPage:
    return LogPage(
        page.lines, page.cursor, rotated=rotated, cleared=cleared, reset=True, more=page.more
    )


def _forward(files: _Files, reading: _Reading, keep: LogFilter) -> LogPage:
    """Read on from `reading`'s place, into newer files when a backup is done."""
    while True:
        current = files.opened[reading.index]
        _scan(current, reading, keep)
        if reading.more or reading.left <= 0:
            reading.more = True
            break
        if not current.backup or reading.index == 0:  # the live file: its end for now
            break
        # A backup read to its end: it gets no more lines, so go on in the next newer file.
        reading.index -= 1
        reading.offset = 0
        if reading.turn is None:
            reading.turn = len(reading.lines)
    cursor = _at(files.opened[reading.index], reading.offset)
    rotated = reading.turn is not None
    return LogPage(
        reading.lines, cursor, rotated=rotated, more=reading.more, turn=reading.turn or 0
    )


def _scan(current: _File, reading: _Reading, keep: LogFilter) -> None:
    """The whole lines of `current` from the reading's offset, within its budget."""
    remaining = current.size - reading.offset
    wanted = min(remaining, reading.left)
    data = os.pread(current.fd, wanted, reading.offset) if wanted > 0 else b""
    reading.more = wanted < remaining
    cut = data.rfind(b"\n") + 1
    if cut < len(data) and _take_rest(current, reading, data, cut):
        cut = len(data)
    end = reading.offset
    for raw in data[:cut].split(b"\n"):
        if end - reading.offset >= cut:  # what follows the last newline
            break
        end = min(end + len(raw) + 1, reading.offset + cut)
        if keep.matches(raw):
            line = LogLine(raw.decode("utf-8", "replace"), _at(current, end))
            reading.lines.append(line)
    reading.left -= end - reading.offset
    reading.offset = end


def _take_rest(current: _File, reading: _Reading, data: bytes, cut: int) -> bool:
    """Whether a last piece without a newline is to be taken as a line all the same."""
    # A backup gets no more writes: its last piece is a whole line. A page without any
    # newline would stall the follower for good: that line is cut at the page's end.
    whole_file = reading.offset + len(data) == current.size
    return (current.backup and whole_file) or (cut == 0 and len(data) >= PAGE_MAX_BYTES)


# --- the first page: reading backwards ------------------------------------------------------


def _initial_page(files: _Files, keep: LogFilter, count: int) -> LogPage:
    newest = files.newest()
    if newest is None:
        return LogPage([], NOWHERE)
    end = _last_line_end(newest.fd, newest.size)
    found = _tail(newest.fd, end, keep, count)
    lines = [LogLine(raw.decode("utf-8", "replace"), _at(newest, stop)) for raw, stop in found]
    return LogPage(lines, _at(newest, end))


def _at(current: _File, offset: int) -> Cursor:
    return Cursor(current.inode, offset, current.check(offset))


def _last_line_end(fd: int, size: int) -> int:
    """The offset just after the last newline before `size`: a half-written line waits."""
    pos = size
    while pos > 0 and size - pos < PAGE_MAX_BYTES:
        start = max(0, pos - logs.BLOCK_SIZE)
        cut = os.pread(fd, pos - start, start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        pos = start
    # No newline at all: the file is one line still being written. No newline within a
    # page: a line too long to wait for; the follower starts after it.
    return 0 if pos == 0 else size


def _tail(fd: int, end: int, keep: LogFilter, count: int) -> list[tuple[bytes, int]]:
    """The last `count` lines before `end` that `keep` passes, oldest first, with their ends."""
    found: list[tuple[bytes, int]] = []
    if count <= 0:
        return found
    for raw, stop in _backwards(fd, end):
        if keep.matches(raw):
            found.append((raw, stop))
            if len(found) == count:
                break
    found.reverse()
    return found


def _backwards(fd: int, end: int) -> Iterator[tuple[bytes, int]]:
    """The lines that end by `end` (just after a newline), newest first, each with its end.

    Reads at most `PAGE_MAX_BYTES` back from `end`, a block at a time.
    """
    pos, carry, stop = end, b"", end
    floor = max(0, end - PAGE_MAX_BYTES)
    while pos > floor:
        start = max(floor, pos - logs.BLOCK_SIZE)
        block = os.pread(fd, pos - start, start)
        if len(block) < pos - start:  # the file shrank under us (cleared): stop here
            return
        # What comes before the block's first newline belongs to a line that starts
        # earlier: it waits for the next block.
        pieces = (block + carry).split(b"\n")[:-1]
        carry = pieces.pop(0) + b"\n" if start > 0 and pieces else b""
        for raw in reversed(pieces):
            yield raw, stop
            stop -= len(raw) + 1
        pos = start


# --- server-sent events ---------------------------------------------------------------------


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
