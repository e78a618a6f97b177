"""The PID file's verdicts, against real processes holding (or not holding) the lock."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from support import wait_for

from cronmgr.controller.processes import terminate
from cronmgr.core.pidfile import AlreadyRunning, Liveness, PidFile, inspect, remove_stale

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cronmgr.core.pidfile import PidFile
    PidFile(Path(sys.argv[1])).acquire()
    print("locked", flush=True)
    sys.stdin.read()
    """
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """A real process that took the PID file lock and keeps it until its stdin closes."""
    path = tmp_path / "cronmgr.pid"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    yield proc, path
    proc.kill()
    proc.communicate()


def test_a_live_lock_holder_is_running(holder: tuple[subprocess.Popen[str], Path]) -> None:
    """Lock held, pid alive, create time matching: running."""
    proc, path = holder
    found = inspect(path)
    assert found.liveness is Liveness.RUNNING
    assert found.record is not None and found.record.pid == proc.pid


def test_a_second_daemon_cannot_take_the_lock(
    holder: tuple[subprocess.Popen[str], Path],
) -> None:
    """Acquiring a held PID file fails with the holder's pid in the message."""
    proc, path = holder
    with pytest.raises(AlreadyRunning, match=f"PID: {proc.pid}"):
        PidFile(path).acquire()
    assert not remove_stale(path), "a held PID file must never be removed"
    assert path.exists()


def test_a_killed_holder_leaves_a_stale_file_that_can_be_removed(
    holder: tuple[subprocess.Popen[str], Path],
) -> None:
    """After kill -9 the record names a dead pid: stale, and removable."""
    proc, path = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    found = inspect(path)
    assert found.liveness is Liveness.STALE and "not running" in found.reason
    assert remove_stale(path) and not path.exists()


def test_a_zombie_is_not_running(tmp_path: Path) -> None:
    """A recorded process that exited but was not reaped is stale, not running."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, what="zombie")
    path = tmp_path / "cronmgr.pid"
    path.write_text(f"{child.pid}\n{psutil.Process(child.pid).create_time()!r}\n")
    found = inspect(path)
    child.wait()
    assert found.liveness is Liveness.STALE and "zombie" in found.reason


def test_a_recycled_pid_is_not_the_daemon(tmp_path: Path) -> None:
    """A live pid with another create time is somebody else: stale."""
    path = tmp_path / "cronmgr.pid"
    path.write_text(f"{os.getpid()}\n1.0\n")
    found = inspect(path)
    assert found.liveness is Liveness.STALE and "reused" in found.reason


def test_an_empty_file_under_lock_is_a_daemon_starting(tmp_path: Path) -> None:
    """The lock is taken before the record is written: that moment is 'starting'."""
    path = tmp_path / "cronmgr.pid"
    script = (
        "import fcntl, sys, os; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        assert inspect(path).liveness is Liveness.STARTING
        assert not remove_stale(path)
    finally:
        proc.kill()
        proc.communicate()
    assert inspect(path).liveness is Liveness.STALE


def test_release_removes_the_file_and_frees_the_lock(tmp_path: Path) -> None:
    """A daemon that exits cleanly leaves no PID file behind."""
    path = tmp_path / "cronmgr.pid"
    with PidFile(path):
        assert inspect(path).liveness is Liveness.RUNNING
    assert not path.exists()
    assert inspect(path).liveness is Liveness.ABSENT


def test_terminate_escalates_to_sigkill_of_the_whole_family() -> None:
    """A process that ignores SIGTERM is killed after the grace, with its children."""
    script = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "c = subprocess.Popen(['sleep', '300']); print(c.pid, flush=True); time.sleep(300)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    child_pid = int(proc.stdout.readline())
    stubborn = psutil.Process(proc.pid)
    child = psutil.Process(child_pid)
    killed = asyncio.run(terminate(stubborn, grace=0.5))
    proc.communicate()
    assert killed is True
    assert not stubborn.is_running()  # psutil reaped it, so Popen sees no return code
    wait_for(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, what="child")
