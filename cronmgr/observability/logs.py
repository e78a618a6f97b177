"""Structured logs: JSON lines written by one process, tailed and cleared by another.

Every process configures structlog once, at its entry point, with `configure_logging()`.
The daemon writes `settings.log_file` and rotates it by size itself; the controller and
the CLI log to stderr in the same format. The controller reads the daemon's file with
`tail_lines()` and empties it with `clear_log()`, both from another process than the
writer, so the file is only ever truncated in place and the writer only ever appends.
Following the file across rotations and clears is `log_pages` and `log_stream`'s part.
"""

from __future__ import annotations

import contextlib
import contextvars
import glob
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from cronmgr.core.config import Settings

BLOCK_SIZE = 64 * 1024
"""How much `tail_lines()` reads per step backwards from the end of the file."""

# Only one file sink per process, and `reopen_log_file()` (a SIGHUP handler) takes no
# arguments, so the daemon's open sink lives here; None in the controller and the CLI.
_file_sink: _RotatingFile | None = None


def configure_logging(settings: Settings, *, to_file: bool, final: bool = False) -> None:
    """Send structlog and stdlib logging to JSON lines: the log file, or else stderr.

    Call it once at an entry point; calling it again replaces the previous set-up and
    closes the previous file. `final` (the daemon, which never configures again) lets
    every logger keep what it resolved on its first event instead of resolving it anew
    for each one.
    """
    global _file_sink
    _close_file_sink()
    factory: Callable[..., WrappedLogger]
    if to_file:
        _file_sink = _RotatingFile(
            settings.log_file, settings.log_max_bytes, settings.log_backup_count
        )
        factory = _file_sink.as_logger
    else:
        factory = structlog.BytesLoggerFactory(sys.stderr.buffer)
    structlog.configure(
        processors=_processors(),
        wrapper_class=structlog.make_filtering_bound_logger(settings.log_level),
        logger_factory=factory,
        # Not cached unless final: a reconfiguration (a test, a reload) then reaches every
        # module-level logger. Hot loops bind a logger once (`log = logger.bind(...)`),
        # which costs nothing per event.
        cache_logger_on_first_use=final,
    )
    _route_stdlib_logging()


def reopen_log_file() -> None:
    """Close and reopen the log file, e.g. after logrotate moved it (the daemon's SIGHUP)."""
    if _file_sink is not None:
        _file_sink.reopen()


def tail_lines(path: Path, count: int) -> list[str]:
    """The last `count` lines of `path`; reads backwards, so the cost follows `count` only.

    A missing file has no lines; a last line without its newline still counts; bytes that
    are not UTF-8 are replaced.
    """
    if count <= 0:
        return []
    try:
        with path.open("rb") as fh:
            data = _tail_bytes(fh.fileno(), count)
    except FileNotFoundError:
        return []
    if not data:
        return []
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    return [line.decode("utf-8", "replace") for line in lines[-count:]]


def clear_log(path: Path) -> None:
    """Empty the live log in place and delete its rotated backups; a missing file is fine."""
    # Truncate, never unlink or replace: the daemon keeps writing through the descriptor it
    # has, and since it appends (O_APPEND), its next line lands at offset 0 of this file.
    with contextlib.suppress(FileNotFoundError):
        os.truncate(path, 0)
    for backup in backups(path):
        backup.unlink(missing_ok=True)


def _processors() -> list[Processor]:
    return [
        _merge_context,
        _add_level_time_pid,
        structlog.processors.format_exc_info,
        # orjson returns bytes, which both sinks write as they are. str() keeps a Path or
        # an odd object readable instead of failing the whole event.
        structlog.processors.JSONRenderer(
            serializer=orjson.dumps,
            default=str,
            option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS,
        ),
    ]


class bound_fields:
    """Bind fields to every line logged inside the `with` block, in this task only, then
    restore what was bound before: structlog's `bound_contextvars`, at a third of the
    cost (it reads the whole context first; a run binds twice, a thousand times a second).
    """

    __slots__ = ("_fields", "_tokens")

    def __init__(self, **fields: Any) -> None:
        self._fields = fields
        self._tokens: Mapping[str, contextvars.Token[Any]] = {}

    def __enter__(self) -> None:
        self._tokens = structlog.contextvars.bind_contextvars(**self._fields)

    def __exit__(self, *exc_info: object) -> None:
        structlog.contextvars.reset_contextvars(**self._tokens)


_PREFIX = structlog.contextvars.STRUCTLOG_KEY_PREFIX
_PREFIX_LEN = len(_PREFIX)


def _merge_context(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    # structlog's merge_contextvars, looking each variable up once instead of twice.
    for var, value in contextvars.copy_context().items():
        if value is not Ellipsis and var.name.startswith(_PREFIX):
            event_dict.setdefault(var.name[_PREFIX_LEN:], value)
    return event_dict


_LEVEL_OF_METHOD = {"warn": "warning", "exception": "error"}


def _add_level_time_pid(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    # Three fields every line has, in one processor instead of three.
    event_dict["level"] = _LEVEL_OF_METHOD.get(method_name, method_name)
    # A datetime, not a string: orjson renders it as ISO 8601 ("...Z") several times faster
    # than isoformat() would (structlog's TimeStamper), and this runs for every line.
    event_dict["timestamp"] = datetime.now(UTC)
    event_dict["pid"] = _pid
    if _node is not None:
        event_dict["node"] = _node
    return event_dict


def set_node(node_id: str) -> None:
    """Put `node` (this daemon's node id) on every line logged from now on."""
    global _node
    _node = node_id


def _forked() -> None:
    global _pid
    _pid = os.getpid()


# Known, not asked per line: a process that forks after configuring logging (the daemon
# detaching) learns its new pid in the child.
_pid = os.getpid()
_node: str | None = None  # the daemon's node id, once it joined its store
os.register_at_fork(after_in_child=_forked)


class _StdlibHandler(logging.Handler):
    """Hands stdlib records (aiohttp, asyncio) to structlog, so they become JSON lines too."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {"logger": record.name}
            if record.exc_info:
                fields["exc_info"] = record.exc_info
            level = min(record.levelno // 10 * 10, logging.CRITICAL)  # a standard level
            structlog.get_logger().log(level, record.getMessage(), **fields)
        except Exception:
            self.handleError(record)


def _route_stdlib_logging() -> None:
    # Only our own handler is replaced: handlers others put on the root logger (pytest's
    # capture) stay, and the entry points install none of their own.
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StdlibHandler)]:
        root.removeHandler(handler)
    root.addHandler(_StdlibHandler(logging.WARNING))
    root.setLevel(logging.WARNING)


def _close_file_sink() -> None:
    global _file_sink
    if _file_sink is not None:
        _file_sink.close()
        _file_sink = None


class _RotatingFile:
    """Appends lines to a file and rotates it by size: structlog's logger in the daemon.

    Written here rather than taken from `logging.handlers.RotatingFileHandler`: structlog
    renders bytes, and the stdlib handler would want str, a LogRecord, a formatter and a
    `tell()` per line. This is one unbuffered write per line (a reader sees whole lines at
    once, and lines from several threads never interleave) under a lock, with rotation
    between lines, so no line is split across files.
    """

    def __init__(self, path: Path, max_bytes: int, backup_count: int) -> None:
        self._path = path
        self._max_bytes = max_bytes
        self._backup_count = backup_count
        # Reentrant: a signal handler (SIGHUP: reopen; or one that logs) may interrupt a
        # write in the same thread, and must not wait for a lock that thread holds.
        self._lock = threading.RLock()
        self._dropped = 0  # lines lost since the last one written (a full disk)
        self._drop_error = ""
        self._cut = False  # whether the file ends in part of a line
        self._reopen = False
        self._open()

    def as_logger(self, *args: Any) -> _RotatingFile:
        """The structlog logger factory: every logger writes through this one file."""
        return self

    def msg(self, message: bytes) -> None:
        """Append one rendered event as a line, rotating first if it would not fit.

        A line that cannot be written (a full disk) is dropped and counted, never raised
        into the code that logged it; the first line written again is preceded by a
        `log_lines_dropped` line saying how many were lost.
        """
        line = message + b"\n"
        with self._lock:
            try:
                if self._reopen:  # a rotation that could not open the new file
                    self._open()
                    self._reopen = False
                if self._size + len(line) > self._max_bytes:
                    self._rotate_if_full(len(line))
                if self._dropped:
                    self._write(self._dropped_line())
                    self._dropped, self._drop_error = 0, ""
                self._write(line)
            except OSError as exc:
                self._dropped += 1
                self._drop_error = str(exc)

    # structlog calls the method named after the level; every level is one line here.
    debug = info = warning = warn = error = critical = fatal = exception = log = msg

    def reopen(self) -> None:
        """Close the file and open the one now at the path."""
        with self._lock:
            self._file.close()
            self._open()

    def close(self) -> None:
        """Close the file; writing afterwards fails loudly."""
        with self._lock:
            self._file.close()

    def _open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # Append mode (O_APPEND): when the controller truncates the file in place, the
        # next write lands at offset 0 instead of at the old offset behind a hole of NULs.
        self._file = self._path.open("ab", buffering=0)
        self._size = os.fstat(self._file.fileno()).st_size

    def _write(self, line: bytes) -> None:
        if self._cut:
            line = b"\n" + line  # ends the part of a line a full disk cut short
        written = 0
        try:
            written = self._file.write(line) or 0
            # A regular file takes only part of a write when a signal lands mid-way (or
            # the disk fills up); finishing it keeps the line whole.
            while written < len(line):
                written += self._file.write(line[written:]) or 0
        except OSError:
            self._cut = self._cut or written > 0
            raise
        self._cut = False
        self._size += len(line)

    def _dropped_line(self) -> bytes:
        # Rendered here, not logged: logging would come back into this sink.
        fields = {"event": "log_lines_dropped", "lines": self._dropped, "error": self._drop_error}
        return orjson.dumps(_add_level_time_pid(None, "error", fields)) + b"\n"

    def _rotate_if_full(self, incoming: int) -> None:
        # The counter only ever grows, but the controller may have emptied the file since:
        # ask the file itself before moving it aside.
        self._size = os.fstat(self._file.fileno()).st_size
        if self._size > 0 and self._size + incoming > self._max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        if self._backup_count == 0:
            self._file.truncate(0)
            self._size = 0
            return
        self._file.close()
        for index in range(self._backup_count - 1, 0, -1):
            _move(_backup_path(self._path, index), _backup_path(self._path, index + 1))
        _move(self._path, _backup_path(self._path, 1))
        self._reopen = True
        self._open()
        self._reopen = False


def _backup_path(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")


def _move(source: Path, target: Path) -> None:
    # A backup that does not exist yet, or a log someone else removed, is nothing to move.
    with contextlib.suppress(FileNotFoundError):
        source.replace(target)


def backups(path: Path) -> list[Path]:
    """The rotated backups of the log at `path` (`<name>.1`, `<name>.2`, ...), unordered."""
    prefix = path.name + "."
    candidates = path.parent.glob(glob.escape(prefix) + "*")
    return [p for p in candidates if p.name[len(prefix) :].isdigit()]


def _tail_bytes(fd: int, count: int, end: int | None = None) -> bytes:
    # Blocks are read from the end until they hold count + 1 newlines (the extra one may
    # end the last line), or the start of the file is reached.
    pos = os.fstat(fd).st_size if end is None else end
    chunks: list[bytes] = []
    newlines = 0
    while pos > 0 and newlines <= count:
        start = max(0, pos - BLOCK_SIZE)
        chunk = os.pread(fd, pos - start, start)
        if not chunk:  # the file shrank under us (cleared): what was read is all there is
            break
        chunks.append(chunk)
        newlines += chunk.count(b"\n")
        pos = start
    chunks.reverse()
    return b"".join(chunks)
