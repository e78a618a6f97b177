"""The files a page of the log is read from: the live file, then its backups newest first,
each opened only when the search for a cursor's inode gets that far, kept open (with the
checksum of its first bytes) while the page is read, and closed with it."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from cronmgr.observability import logs
from cronmgr.observability.log_cursor import CHECK_BYTES


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
