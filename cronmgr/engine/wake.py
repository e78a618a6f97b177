"""Wake-ups at a precise moment, for the engine's timer.

An event loop's own timers are too coarse for slots a millisecond apart: uvloop's tick in
whole milliseconds of a clock it reads once per loop turn, and it rounds a delay to the
nearest one (below half a millisecond, to a `call_soon`). A wake-up rounded down comes
before its slot, finds nothing due and arms again, spinning through loop turns until the
slot; one rounded up comes up to a millisecond late, and later still when the loop turn
that armed it ran long.

On Linux an `Alarm` is a timerfd that the loop watches like a socket, set to an absolute
moment of the wall clock (CLOCK_REALTIME, in nanoseconds): the kernel wakes the loop when
the wall clock gets there, whatever the loop's own timers say, and also when the clock was
stepped meanwhile (NTP, an operator): slots are moments of the wall clock, and so is the
alarm. Elsewhere, or if the timerfd cannot be had, it is a loop timer rounded up to the
millisecond: never early, at most about a millisecond late, on the monotonic clock.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import math
import os
import sys
import time
from collections.abc import Callable

_CLOCK_REALTIME = 0
_TFD_NONBLOCK = 0o4000
_TFD_CLOEXEC = 0o2000000
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def wake_moment(delay: float) -> float:
    """The event-loop moment `delay` seconds from now, rounded up to a whole millisecond.

    Both uvloop's loop clock and asyncio's are `time.monotonic`.
    """
    return math.ceil((time.monotonic() + delay) * 1000.0) / 1000.0


class _TimerFd:
    """A non-blocking timerfd on the wall clock (Linux only)."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._settime = libc.timerfd_settime
        self._settime.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.c_void_p,
        ]
        create = libc.timerfd_create
        create.argtypes = [ctypes.c_int, ctypes.c_int]
        fd = create(_CLOCK_REALTIME, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        self.fd = fd
        self._spec = _Itimerspec()

    def set(self, unix_ns: int) -> None:
        """Expire at this moment of the wall clock (ns since the epoch); 0 disarms."""
        value = self._spec.it_value
        value.tv_sec, value.tv_nsec = divmod(unix_ns, 1_000_000_000)
        if self._settime(self.fd, _TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None) < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))

    def expired(self) -> bool:
        """Whether it expired since it was last set (and clear that)."""
        try:
            os.read(self.fd, 8)
        except BlockingIOError:  # set again after the expiry that woke the loop
            return False
        return True

    def close(self) -> None:
        os.close(self.fd)


class Alarm:
    """One pending wake-up at a time, calling `callback` on the running loop.

    `set` replaces the pending wake-up, `cancel` drops it; `close` when done.
    """

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._fd: _TimerFd | None = None
        if sys.platform.startswith("linux"):
            self._fd = self._watched_timerfd()

    @property
    def precise(self) -> bool:
        """Whether wake-ups come at the moment asked (a timerfd), not the millisecond after."""
        return self._fd is not None

    def _watched_timerfd(self) -> _TimerFd | None:
        try:
            fd = _TimerFd()
        except (OSError, AttributeError):  # no timerfd in this libc or kernel
            return None
        try:
            self._loop.add_reader(fd.fd, self._expired)
        except (OSError, NotImplementedError):  # a loop that watches only sockets
            fd.close()
            return None
        return fd

    def set_at(self, unix_seconds: float) -> None:
        """Wake when the wall clock (`time.time`) reaches this moment (at once if it has)."""
        if self._fd is not None:
            # Zero would disarm: the earliest moment is 1 ns.
            self._fd.set(max(1, math.ceil(unix_seconds * 1e9)))
            return
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, unix_seconds - time.time())
        self._timer = self._loop.call_at(wake_moment(delay), self._fire)

    def set(self, delay: float) -> None:
        """Wake `delay` seconds from now (at once for a delay ≤ 0)."""
        self.set_at(time.time() + delay)

    def cancel(self) -> None:
        """Drop the pending wake-up, if any."""
        if self._fd is not None:
            self._fd.set(0)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        """Cancel, and give the timerfd back."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._fd is not None:
            self._loop.remove_reader(self._fd.fd)
            self._fd.close()
            self._fd = None

    def _expired(self) -> None:
        if self._fd is not None and self._fd.expired():
            self._callback()

    def _fire(self) -> None:
        self._timer = None
        self._callback()
