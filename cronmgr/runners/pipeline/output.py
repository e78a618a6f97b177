"""A command step's output: its stdout and stderr read line by line, logged and tailed.

Lines are read from pipes of our own, a bounded chunk at a time, so an endless line costs
no more memory than a short one: it is cut at `MAX_LINE_CHARS` characters and marked
with `LINE_CUT_MARKER`. Each line is logged as a `step_output` event and the last ones
are kept as the step's output tail.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections import deque

from structlog.typing import FilteringBoundLogger

MAX_LINE_CHARS = 8192
LINE_CUT_MARKER = " …[cut: line was {size} bytes]"
# Enough bytes for MAX_LINE_CHARS characters of any UTF-8 text; the rest of a line is
# counted, never kept, so one endless line costs no more memory than a short one.
_MAX_LINE_BYTES = MAX_LINE_CHARS * 4
_CHUNK_BYTES = 64 * 1024


class Output:
    """A step's stdout and stderr: our own pipes, read line by line into the log and a tail.

    Own pipes rather than asyncio's PIPE so that they can be closed on our terms, whatever
    still holds their other end.
    """

    def __init__(self, log: FilteringBoundLogger, keep_lines: int) -> None:
        self.tail: deque[str] = deque(maxlen=keep_lines)
        self._log = log
        self._read_ends: dict[str, int] = {}
        self._write_ends: dict[str, int] = {}
        self._transports: list[asyncio.BaseTransport] = []
        self._tasks: list[asyncio.Task[None]] = []
        for stream in ("stdout", "stderr"):
            self._read_ends[stream], self._write_ends[stream] = os.pipe()

    def child_ends(self) -> tuple[int, int]:
        """The write ends to hand to the child as stdout and stderr."""
        return self._write_ends["stdout"], self._write_ends["stderr"]

    def close_child_ends(self) -> None:
        """Close our copies of the write ends, so EOF comes when the child's copies close."""
        for fd in self._write_ends.values():
            os.close(fd)
        self._write_ends.clear()

    async def start(self) -> None:
        """Start reading both pipes."""
        loop = asyncio.get_running_loop()
        for stream in ("stdout", "stderr"):
            reader = asyncio.StreamReader(limit=_CHUNK_BYTES)
            pipe = os.fdopen(self._read_ends.pop(stream), "rb", buffering=0)
            try:
                transport, _ = await loop.connect_read_pipe(
                    functools.partial(asyncio.StreamReaderProtocol, reader), pipe
                )
            except BaseException:
                pipe.close()
                raise
            self._transports.append(transport)
            self._tasks.append(asyncio.create_task(self._pump(reader, stream)))

    async def drain(self, seconds: float) -> bool:
        """Wait for both pipes to reach EOF; False if they did not within `seconds`."""
        if not self._tasks:
            return True
        _, pending = await asyncio.wait(self._tasks, timeout=seconds)
        if pending:
            # Stop reading: the pumps finish the bounded amount they already hold.
            for transport in self._transports:
                transport.close()
            await asyncio.wait(pending)
        for task in self._tasks:
            if not task.cancelled() and task.exception() is not None:
                self._log.error("step_output_failed", error=repr(task.exception()))
        return not pending

    def close(self) -> None:
        """Stop reading and release every descriptor; safe to call more than once."""
        for task in self._tasks:
            task.cancel()
        for transport in self._transports:
            transport.close()
        for fd in (*self._read_ends.values(), *self._write_ends.values()):
            os.close(fd)
        self._read_ends.clear()
        self._write_ends.clear()
        self._transports.clear()

    async def _pump(self, reader: asyncio.StreamReader, stream: str) -> None:
        # read(n) returns whatever is there, so no line length can overrun a limit.
        lines = LineSplitter()
        while chunk := await reader.read(_CHUNK_BYTES):
            for line in lines.feed(chunk):
                self._emit(stream, line)
        rest = lines.close()
        if rest is not None:
            self._emit(stream, rest)

    def _emit(self, stream: str, line: str) -> None:
        self.tail.append(f"{stream}: {line}")
        self._log.info("step_output", stream=stream, line=line)


class LineSplitter:
    """Cuts a byte stream into text lines, holding at most `max_bytes` of any one line."""

    def __init__(self, max_bytes: int = _MAX_LINE_BYTES) -> None:
        self._max = max_bytes
        self._head = bytearray()
        self._size = 0

    def feed(self, chunk: bytes) -> list[str]:
        """The lines `chunk` completes; the unfinished rest waits for the next chunk."""
        *complete, partial = chunk.split(b"\n")
        lines = []
        for piece in complete:
            if self._size:
                self._take(piece)
                lines.append(self._finish())
            else:
                lines.append(decode_line(piece[: self._max], len(piece)))
        self._take(partial)
        return lines

    def close(self) -> str | None:
        """The last line if the stream did not end with a newline."""
        return self._finish() if self._size else None

    def _take(self, piece: bytes) -> None:
        room = self._max - len(self._head)
        if room > 0:
            self._head += piece[:room]
        self._size += len(piece)

    def _finish(self) -> str:
        line = decode_line(bytes(self._head), self._size)
        self._head.clear()
        self._size = 0
        return line


def decode_line(raw: bytes, size: int) -> str:
    """Text of a line whose first bytes are `raw` out of `size`; cut, with a marker, if long."""
    cut = size > len(raw)
    if not cut:
        raw = raw.removesuffix(b"\r")
    text = raw.decode("utf-8", errors="replace")
    if cut or len(text) > MAX_LINE_CHARS:
        return text[:MAX_LINE_CHARS] + LINE_CUT_MARKER.format(size=size)
    return text
