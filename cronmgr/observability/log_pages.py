"""Reading the log a page at a time: `read_page()` and the `LogPage` it gives.

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
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cronmgr.observability import logs
from cronmgr.observability.log_cursor import NOWHERE, Cursor, LogFilter
from cronmgr.observability.log_files import _File, _Files

PAGE_MAX_BYTES = 1024 * 1024
"""Most bytes of log one page reads, whether its lines pass the filter or not."""


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
