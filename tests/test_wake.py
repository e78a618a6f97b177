"""The engine's alarm: wakes at the moment asked, never before, once per setting.

Each check runs on both loops the daemon may use (uvloop, asyncio) and on both kinds of
alarm: the timerfd, and the fallback of a loop timer rounded up to the millisecond, which
is what a system without timerfd gets (here by letting the alarm believe it is not on
Linux).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop

from cronmgr.engine.wake import Alarm, wake_moment

RUNNERS = {"asyncio": asyncio.run, "uvloop": uvloop.run}
Run = Callable[[Awaitable[Any]], Any]


@pytest.fixture(params=sorted(RUNNERS))
def run(request: pytest.FixtureRequest) -> Run:
    """Runs a coroutine on a fresh loop of each kind."""
    return RUNNERS[request.param]  # type: ignore[return-value]


@pytest.fixture(params=["timerfd", "loop timer"])
def kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which alarm the test gets; the timerfd only where the system has one."""
    if request.param == "timerfd" and not sys.platform.startswith("linux"):
        pytest.skip("timerfd is Linux only")
    if request.param == "loop timer":
        monkeypatch.setattr(sys, "platform", "darwin")
    return str(request.param)


class Wakes:
    """An alarm's callback: when it was called, and an event per call."""

    def __init__(self) -> None:
        self.at: list[float] = []
        self.woken = asyncio.Event()

    def __call__(self) -> None:
        self.at.append(time.time())  # the alarm keeps the wall clock's time, as slots do
        self.woken.set()


async def _alarm(kind: str) -> tuple[Alarm, Wakes]:
    wakes = Wakes()
    alarm = Alarm(wakes)
    assert alarm.precise is (kind == "timerfd")
    return alarm, wakes


def test_wakes_at_the_moment_never_before(run: Run, kind: str) -> None:
    async def body() -> None:
        alarm, wakes = await _alarm(kind)
        for delay in (0.0, 0.0003, 0.002, 0.0137):
            wakes.woken.clear()
            asked = time.time() + delay
            alarm.set(delay)
            await asyncio.wait_for(wakes.woken.wait(), 5.0)
            assert wakes.at[-1] >= asked
        assert len(wakes.at) == 4
        alarm.close()

    run(body())


def test_set_at_wakes_when_the_wall_clock_gets_there(run: Run, kind: str) -> None:
    async def body() -> None:
        alarm, wakes = await _alarm(kind)
        moment = time.time() + 0.02
        alarm.set_at(moment)
        await asyncio.wait_for(wakes.woken.wait(), 5.0)
        assert wakes.at == [wakes.at[0]] and wakes.at[0] >= moment
        wakes.woken.clear()
        alarm.set_at(time.time() - 5.0)  # a moment gone by: at once
        await asyncio.wait_for(wakes.woken.wait(), 5.0)
        assert len(wakes.at) == 2
        alarm.close()

    run(body())


def test_set_replaces_and_cancel_drops(run: Run, kind: str) -> None:
    async def body() -> None:
        alarm, wakes = await _alarm(kind)
        alarm.set(30.0)
        alarm.set(0.005)  # earlier: replaces the first
        await asyncio.wait_for(wakes.woken.wait(), 5.0)
        alarm.set(0.005)
        alarm.set(30.0)  # later: replaces too
        alarm.set(0.01)
        alarm.cancel()
        # Nothing is pending any more: a second alarm set well after both moments comes
        # first, and the first alarm stayed quiet meanwhile.
        later = Wakes()
        witness = Alarm(later)
        witness.set(0.1)
        await asyncio.wait_for(later.woken.wait(), 5.0)
        assert len(wakes.at) == 1
        alarm.close()
        witness.close()

    run(body())


def test_one_wake_per_setting(run: Run, kind: str) -> None:
    """A wake-up rounded down would come early and the caller would arm again and again;
    an alarm calls back once per setting, whatever the delay."""

    async def body() -> None:
        alarm, wakes = await _alarm(kind)
        settings = 0
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:
            wakes.woken.clear()
            alarm.set(0.0004)
            settings += 1
            await asyncio.wait_for(wakes.woken.wait(), 5.0)
        # One more loop turn: a stray second callback would land here.
        await asyncio.sleep(0)
        assert len(wakes.at) == settings
        alarm.close()

    run(body())


def test_close_gives_the_timerfd_back(run: Run) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("timerfd is Linux only")

    async def body() -> None:
        alarm = Alarm(lambda: None)
        fd = alarm._fd.fd if alarm._fd is not None else -1
        assert fd >= 0
        alarm.set(0.001)
        alarm.close()
        with pytest.raises(OSError):
            os.fstat(fd)
        assert not alarm.precise
        alarm.close()  # twice is harmless

    run(body())


def test_wake_moment_rounds_up_to_the_millisecond() -> None:
    before = time.monotonic()
    moment = wake_moment(0.0001)
    assert moment >= before + 0.0001
    assert moment - before < 0.0012
    assert abs(moment * 1000 - round(moment * 1000)) < 1e-6
