"""Where a follower of the log is and which lines it wants: the `Cursor` and the
`LogFilter`.

The daemon appends to `cronmgr.log` and rotates it by renaming (`cronmgr.log` becomes
`cronmgr.log.1`, `.1` becomes `.2`, ...); the controller clears it by truncating it in
place. A follower holds a `Cursor`: the inode of the file it read last, the offset after
the last whole line it got there, and a checksum of that file's first bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args

import orjson

from cronmgr.core.specs.queries import LOG_CURSOR_PATTERN, LogLevel

CHECK_BYTES = 64 * 1024
"""How much of a file's start a cursor's checksum covers (more than the longest line)."""

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
