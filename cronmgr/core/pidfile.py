"""The daemon's PID file: pid and process create time, under an flock held for its life.

"Running" means all of: the lock is held, the pid is alive, it is not a zombie, and its
create time matches the one recorded (so a recycled pid is never mistaken for the daemon).
Anything else is stale, and only a process that can take the lock itself may remove the
file, so a daemon that is just starting is never swept away.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType

import psutil

# psutil reports create time from /proc with clock-tick resolution; both sides read it the
# same way, so a small tolerance only absorbs float formatting.
CREATE_TIME_TOLERANCE = 0.05


class AlreadyRunning(Exception):
    """Another live process holds the PID file lock."""


@dataclass(frozen=True, slots=True)
class PidRecord:
    """What the PID file says: which process, created when."""

    pid: int
    create_time: float


class Liveness(StrEnum):
    """The verdict on a PID file."""

    ABSENT = "absent"
    STARTING = "starting"
    RUNNING = "running"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class Inspection:
    """The verdict with its evidence."""

    liveness: Liveness
    record: PidRecord | None = None
    reason: str = ""
    process: psutil.Process | None = None


class PidFile:
    """The daemon's own handle: take the lock, write the record, remove it on exit.

    Usable as python-daemon's `pidfile` context manager.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> PidRecord:
        """Lock the file for this process's life and record pid and create time."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            if not _lock_patiently(fd):
                os.close(fd)
                raise AlreadyRunning(_holder_message(self.path))
            if _same_file(fd, self.path):
                break
            # Someone removed the file between our open and our lock: lock the new one.
            os.close(fd)
        else:
            raise AlreadyRunning(f"could not lock {self.path}: it keeps being replaced")
        self._fd = fd
        record = PidRecord(os.getpid(), psutil.Process().create_time())
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{record.pid}\n{record.create_time!r}\n".encode(), 0)
        os.fsync(fd)
        return record

    def release(self) -> None:
        """Remove the file while still holding the lock, then let go."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            if _same_file(self._fd, self.path):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> PidFile:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def read_record(path: Path) -> PidRecord | None:
    """Parse the PID file; None when it is missing, empty or half-written."""
    try:
        text = path.read_text()
    except (FileNotFoundError, PermissionError):
        return None
    parts = text.split()
    if len(parts) < 2:
        return None
    try:
        return PidRecord(int(parts[0]), float(parts[1]))
    except ValueError:
        return None


def inspect(path: Path) -> Inspection:
    """Decide whether the daemon recorded in `path` is running, starting or stale."""
    if not path.exists():
        return Inspection(Liveness.ABSENT)
    record = read_record(path)
    locked = is_locked(path)
    if record is None:
        if locked:
            return Inspection(Liveness.STARTING, reason="the daemon is writing its PID file")
        return Inspection(Liveness.STALE, reason=f"PID file {path} is empty or unreadable")
    process, problem = _identify(record)
    if process is not None and locked:
        return Inspection(Liveness.RUNNING, record, process=process)
    if process is not None:
        problem = f"pid {record.pid} is alive but does not hold the PID file lock"
    return Inspection(Liveness.STALE, record, reason=problem)


def remove_stale(path: Path) -> bool:
    """Delete the PID file if no process holds its lock; True when it was removed."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        # Patient: another reader's brief probe of the lock must not make us give up.
        if not _lock_patiently(fd, attempts=20) or not _same_file(fd, path):
            return False
        path.unlink()
        return True
    finally:
        os.close(fd)


def is_locked(path: Path) -> bool:
    """Whether some process holds the PID file's lock right now."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        return not _try_lock(fd, shared=True)
    finally:
        os.close(fd)


def _identify(record: PidRecord) -> tuple[psutil.Process | None, str]:
    try:
        process = psutil.Process(record.pid)
        create_time = process.create_time()
        status = process.status()
    except psutil.NoSuchProcess:
        return None, f"pid {record.pid} is not running"
    except psutil.AccessDenied:
        return None, f"pid {record.pid} cannot be inspected (permission denied)"
    if abs(create_time - record.create_time) > CREATE_TIME_TOLERANCE:
        return None, f"pid {record.pid} now belongs to another process (pid reused)"
    if status == psutil.STATUS_ZOMBIE:
        return None, f"pid {record.pid} is a zombie (exited, not yet reaped)"
    return process, ""


def _lock_patiently(fd: int, attempts: int = 50) -> bool:
    # A controller probing the lock holds it for microseconds; only a lock that stays
    # taken means another daemon.
    for _ in range(attempts):
        if _try_lock(fd):
            return True
        time.sleep(0.01)
    return False


def _try_lock(fd: int, *, shared: bool = False) -> bool:
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (opened.st_dev, opened.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _holder_message(path: Path) -> str:
    record = read_record(path)
    pid = f" (PID: {record.pid})" if record else ""
    return f"the daemon is already running{pid}: {path} is locked"
