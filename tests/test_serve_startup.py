"""Start-up that fails says why, once: `cronmgr serve` on a taken port, a CLI call that
finds no token. Real `cronmgr` processes, a real socket held by the test, real daemons.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from support import Controller, controller_settings, kill_daemon, wait_for

from cronmgr.controller.launcher import settings_env
from cronmgr.core import pidfile
from cronmgr.core.config import Settings
from cronmgr.core.launch import DESIRED_FILENAME, write_json_atomic


def cronmgr(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `python -m cronmgr ARGS` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "cronmgr", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def plain_env(settings: Settings) -> dict[str, str]:
    """This environment without CRONMGR_* variables, plus the settings as variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRONMGR_")}
    env.update(settings_env(settings))
    return env


def daemons_in(home: Path) -> list[psutil.Process]:
    """Live processes working in `home`: the daemon runs there."""
    found = []
    for process in psutil.process_iter(["cwd", "status"]):
        if process.info["cwd"] == str(home) and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


@pytest.fixture
def held_port() -> Iterator[socket.socket]:
    """A port on 127.0.0.1 that another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


def test_serve_on_a_taken_port_says_so_in_one_line_and_starts_no_daemon(
    tmp_path: Path, held_port: socket.socket
) -> None:
    port = held_port.getsockname()[1]
    settings = controller_settings(tmp_path, port=port, supervise=True)
    # The last request was to run: a controller that gets its port resumes the daemon.
    desired = {"desired": "running", "interval_seconds": 60, "pipeline": "default"}
    write_json_atomic(settings.state_path / DESIRED_FILENAME, desired)

    result = cronmgr("serve", env=plain_env(settings))

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line == (
        f"cronmgr: port {port} on 127.0.0.1 is in use; choose another port with --port, "
        "CRONMGR_PORT or `port` in the config file"
    )
    assert not settings.pid_file.exists()
    assert not daemons_in(settings.home)
    assert not settings.token_file.exists()

    # The same home on a free port does resume the daemon: what the failure prevented.
    held_port.close()
    controller = Controller(settings)
    try:
        controller.start()
        wait_for(
            lambda: pidfile.inspect(settings.pid_file).liveness is pidfile.Liveness.RUNNING,
            timeout=30,
            what="the daemon to be resumed",
        )
        assert daemons_in(settings.home)
    finally:
        controller.shutdown()
        kill_daemon(settings)


def test_serve_on_an_address_not_of_this_machine_names_the_host_setting(tmp_path: Path) -> None:
    settings = controller_settings(tmp_path, host="192.0.2.1", api_token="t" * 32)
    env = {**plain_env(settings), "CRONMGR_API_TOKEN": "t" * 32}  # needed off loopback
    result = cronmgr("serve", env=env)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert "192.0.2.1 is not an address of this machine" in line and "CRONMGR_HOST" in line


def test_a_cli_call_without_a_token_says_where_it_looked(
    controller: Controller, tmp_path: Path
) -> None:
    """Another home: no token file there, no --token, no CRONMGR_API_TOKEN."""
    elsewhere = controller_settings(tmp_path, port=controller.settings.port)
    result = cronmgr("status", env=plain_env(elsewhere))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("cronmgr: the controller wants a token; no API token was found")
    for place in ("--token", "CRONMGR_API_TOKEN", str(elsewhere.token_file), "CRONMGR_HOME"):
        assert place in line, place
    # With the controller's own home the same call works.
    assert cronmgr("status", env=plain_env(controller.settings)).returncode == 0


def test_a_wrong_token_names_where_it_came_from(controller: Controller, tmp_path: Path) -> None:
    env = plain_env(controller.settings)
    env["CRONMGR_API_TOKEN"] = "w" * 32
    result = cronmgr("status", env=env)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert "invalid bearer token" in line and "came from CRONMGR_API_TOKEN" in line
