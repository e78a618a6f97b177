"""Reading the log backwards a page at a time: `read_older()` and the `OlderPage` it gives,
for a person scrolling up through what happened (the dashboard's "older lines").

A page is the last `count` lines that pass the filter before a cursor (without one: before
the end of the live file), oldest first. At the start of a file the reading goes on at
the end of the next older backup, so paging back crosses rotations. The page's `older`
cursor is the start of the oldest line it read: passed back, it gives the page before.
Like a forward page, one reads at most `PAGE_MAX_BYTES`, lines the filter drops included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cronmgr.observability.log_cursor import NOWHERE, Cursor, LogFilter
from cronmgr.observability.log_files import _File, _Files
from cronmgr.observability.log_pages import (
    PAGE_MAX_BYTES,
    LogLine,
    _at,
    _backwards,
    _last_line_end,
    _still_there,
)


@dataclass(frozen=True, slots=True)
class OlderPage:
    """Lines before a place in the log, oldest first.

    `older`: where the page before this one ends (None: this page reached the start of
    the oldest file there is). `end`: just after the newest line of the live file when
    the page was read from the end, the cursor to follow the log from; else the cursor
    asked for. `gone`: the cursor's place no longer exists (the log was cleared or that
    file rotated out of the kept backups), so the page was read from the end instead.
    """

    lines: list[LogLine]
    older: Cursor | None
    end: Cursor
    gone: bool = False


@dataclass(slots=True)
class _Back:
    """A backward read in progress: newest first until it is done."""

    wanted: int
    left: int = PAGE_MAX_BYTES
    found: list[LogLine] = field(default_factory=list)


def read_older(
    path: Path, before: Cursor | None, keep: LogFilter | None = None, *, count: int = 100
) -> OlderPage:
    """The last `count` lines that `keep` passes before `before` (None: the end)."""
    keep = keep or LogFilter()
    with _Files(path) as files:
        start = _start(files, before)
        if start is None:
            return _from_end(files, keep, count, gone=before is not None)
        index, offset = start
        return _page(files, index, offset, keep, count, end=before or NOWHERE)


def _start(files: _Files, before: Cursor | None) -> tuple[int, int] | None:
    """Where the cursor's place is (file index, offset), if it is still there."""
    if before is None or not before.inode:
        return None
    index = files.find(before.inode)
    if index is None or not _still_there(files.opened[index], before):
        return None
    return index, before.offset


def _from_end(files: _Files, keep: LogFilter, count: int, *, gone: bool) -> OlderPage:
    newest = files.newest()
    if newest is None:
        return OlderPage([], None, NOWHERE, gone=gone)
    end = _last_line_end(newest.fd, newest.size)
    page = _page(files, 0, end, keep, count, end=_at(newest, end))
    return OlderPage(page.lines, page.older, page.end, gone=gone)


def _page(
    files: _Files, index: int, offset: int, keep: LogFilter, count: int, *, end: Cursor
) -> OlderPage:
    back = _Back(count)
    while True:
        current = files.opened[index]
        stopped = _scan_back(current, offset, keep, back)
        if stopped > 0:  # more lines before, in this file
            older: Cursor | None = _at(current, stopped)
            break
        previous = _older_file(files, index)
        if previous is None:  # the start of the oldest file: nothing is older
            older = None
            break
        index, offset = index + 1, previous.size
        if back.wanted <= 0 or back.left <= 0:
            older = _at(previous, offset)
            break
    back.found.reverse()
    return OlderPage(back.found, older, end)


def _older_file(files: _Files, index: int) -> _File | None:
    """The backup older than the file at `index`, if there is one."""
    if index + 1 >= len(files.opened) and (files.oldest() or 0) <= index:
        return None
    return files.opened[index + 1]


def _scan_back(current: _File, end: int, keep: LogFilter, back: _Back) -> int:
    """Take the lines of `current` before `end`, newest first, while the page wants more;
    the offset where the reading stopped, 0 when it reached the start of the file."""
    stopped = end
    for raw, stop in _backwards(current.fd, end):
        stopped = stop - len(raw) - 1
        back.left -= len(raw) + 1
        if keep.matches(raw):
            back.found.append(LogLine(raw.decode("utf-8", "replace"), _at(current, stop)))
            back.wanted -= 1
        if back.wanted <= 0 or back.left <= 0:
            return stopped
    # Nothing read before `end` at all: the start of the file, or a line longer than a
    # page (which cannot be shown): either way, nothing more to read in this file.
    return 0 if stopped == end else stopped
