"""systemd readiness: `cronmgr serve` notifies $NOTIFY_SOCKET; the daemon stays out of it.

A real controller process talks to a real AF_UNIX datagram socket standing in for systemd.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from support import Controller, controller_settings, kill_daemon

from cronmgr.client import Client


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket like systemd's, in a short directory (paths max ~108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="sdn-") as directory:
        path = str(Path(directory) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        try:
            yield sock, path
        finally:
            sock.close()


def receive(sock: socket.socket, timeout: float = 15.0) -> bytes:
    """The next datagram, failing the test if none comes within `timeout` seconds."""
    sock.settimeout(timeout)
    try:
        return sock.recv(4096)
    except TimeoutError:
        pytest.fail(f"no notification within {timeout} s")


def listening(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def notified_controller(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> Iterator[Controller]:
    """Settings for a controller (not started yet), torn down with any daemon it starts."""
    controller = Controller(controller_settings(tmp_path))
    yield controller
    controller.shutdown()
    kill_daemon(controller.settings)


def launch_serve(controller: Controller, notify_path: str) -> None:
    """Start `cronmgr serve` with NOTIFY_SOCKET set, as systemd would (Type=notify)."""
    env = {**controller.env(), "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "30000000"}
    controller.process = subprocess.Popen(
        [sys.executable, "-m", "cronmgr", "serve"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=controller.settings.home,
    )


def test_serve_notifies_ready_once_it_listens_and_stopping_on_sigterm(
    notified_controller: Controller, notify_socket: tuple[socket.socket, str]
) -> None:
    """READY=1 arrives when the port already accepts connections; STOPPING=1 on SIGTERM."""
    sock, path = notify_socket
    launch_serve(notified_controller, path)
    assert receive(sock) == b"READY=1"
    assert listening(notified_controller.settings.port), "READY=1 came before the listen"
    notified_controller.shutdown(signal.SIGTERM)
    assert receive(sock) == b"STOPPING=1"
    assert notified_controller.process is not None
    assert notified_controller.process.returncode == 0


def test_the_daemon_does_not_inherit_the_notify_socket(
    notified_controller: Controller, notify_socket: tuple[socket.socket, str]
) -> None:
    """Only the controller talks to systemd: NOTIFY_SOCKET and WATCHDOG_* stay behind."""
    sock, path = notify_socket
    launch_serve(notified_controller, path)
    assert receive(sock) == b"READY=1"
    with Client(notified_controller.url, token=notified_controller.token) as client:
        pid = client.start(60, "quick")["pid"]
    environ = psutil.Process(pid).environ()
    assert environ.get("CRONMGR_HOME") == str(notified_controller.settings.home)
    assert "NOTIFY_SOCKET" not in environ
    assert "WATCHDOG_USEC" not in environ
    # Nothing else has reached the socket since the controller's READY=1.
    sock.settimeout(0.0)
    with pytest.raises(BlockingIOError):
        sock.recv(4096)
