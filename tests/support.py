"""Shared test fixtures: a real controller process on a free port, with its own home.

Every controller and daemon a test starts runs as a real process; teardown kills whatever
is left (daemon, its steps, the controller) so no test leaks a process into the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from inspect import isawaitable
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp.test_utils import TestServer

from cronmgr.controller.control import DaemonControl
from cronmgr.controller.launcher import settings_env
from cronmgr.controller.processes import process_tree
from cronmgr.core.config import Settings, load_settings
from cronmgr.core.models import RetryPolicy, Schedule, ScheduleType, Target, new_id, utcnow
from cronmgr.core.pidfile import inspect
from cronmgr.store import open_store

REPO = Path(__file__).resolve().parent.parent
TEST_PIPELINES = Path(__file__).resolve().parent / "pipelines"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "it") -> Any:
    """Poll `predicate()` (awaited when it is a coroutine) until it is truthy; fail after
    `timeout` seconds. The async counterpart of `wait_for`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.1)


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def make_home(root: Path) -> Path:
    """A CRONMGR_HOME with the demo pipeline and the test pipelines."""
    home = root / "home"
    pipelines = home / "pipelines"
    shutil.copytree(REPO / "pipelines", pipelines)
    if TEST_PIPELINES.is_dir():
        shutil.copytree(TEST_PIPELINES, pipelines, dirs_exist_ok=True)
    return home


def kill_daemon(settings: Settings) -> None:
    """Kill the daemon recorded in the PID file and all its kin (teardown)."""
    found = inspect(settings.pid_file)
    if found.process is None:
        return
    for member in process_tree(found.process):
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs([found.process], timeout=5)


@dataclass
class Controller:
    """A `cronmgr serve` process and how to reach it."""

    settings: Settings
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the controller."""
        return self.settings.base_url

    @property
    def token(self) -> str:
        """The generated API token."""
        return self.settings.token_file.read_text().strip()

    @property
    def headers(self) -> dict[str, str]:
        """Authorization headers for raw HTTP calls."""
        return {"Authorization": f"Bearer {self.token}"}

    def env(self) -> dict[str, str]:
        """The environment the controller (and the CLI in tests) runs with."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRONMGR_")}
        env.update(settings_env(self.settings))
        return env

    def start(self) -> None:
        """Launch `cronmgr serve` and wait until /health answers."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cronmgr", "serve"],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.settings.home,
        )
        # Generous: on a loaded 2-core machine a cold interpreter takes a while to import.
        wait_for(self._healthy, timeout=30.0, what="the controller to answer /health")

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            err = self.process.stderr.read().decode() if self.process.stderr else ""
            pytest.fail(f"controller exited with {self.process.returncode}: {err}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.settings.port)) == 0

    def shutdown(self, sig: int = signal.SIGTERM) -> None:
        """Stop the controller process (the daemon, if any, keeps running)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()


def controller_settings(root: Path, **overrides: Any) -> Settings:
    """Settings for a test controller: its own home and port, short grace periods."""
    values: dict[str, Any] = {
        "home": make_home(root),
        "port": free_port(),
        "stop_grace_seconds": 3.0,
        "step_kill_grace_seconds": 1.0,
        "supervise": False,
    }
    values.update(overrides)
    return load_settings(env={}, **values)


@pytest.fixture
def controller_factory(tmp_path: Path) -> Iterator[Callable[..., Controller]]:
    """Start controllers with given settings overrides; all are torn down after the test."""
    started: list[Controller] = []

    def factory(**overrides: Any) -> Controller:
        root = tmp_path / f"c{len(started)}"
        root.mkdir()
        controller = Controller(controller_settings(root, **overrides))
        started.append(controller)
        controller.start()
        return controller

    yield factory
    for controller in started:
        controller.shutdown()
        kill_daemon(controller.settings)


@pytest.fixture
def controller(controller_factory: Callable[..., Controller]) -> Controller:
    """One running controller with supervision off."""
    return controller_factory()


@pytest.fixture
async def http(controller: Controller) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP session that talks to the controller with its token."""
    async with aiohttp.ClientSession(controller.url, headers=controller.headers) as session:
        yield session


async def add_target_schedule(
    controller: Controller,
    server: TestServer | str,
    path: str,
    *,
    tell: bool = True,
    target: Mapping[str, Any] | None = None,
    **fields: Any,
) -> Schedule:
    """Store a target on `path` of `server` (or of a base URL) with `target`'s fields, and a
    1 s interval schedule of it with `fields`; tell the daemon if `tell`."""
    url = server + path if isinstance(server, str) else str(server.make_url(path))
    stored = Target(
        id=new_id(),
        name=f"t-{path.strip('/')}-{new_id()[-6:]}",
        url=url,
        retry=fields.pop("retry", RetryPolicy(max_attempts=1)),
        **(target or {}),
    )
    now = utcnow()
    values: dict[str, Any] = {"interval_seconds": 1.0, "start_at": now, "created_at": now}
    values.update(fields)
    schedule = Schedule(
        id=new_id(),
        name=f"s-{stored.name}",
        schedule_type=values.pop("schedule_type", ScheduleType.INTERVAL),
        target_id=stored.id,
        **values,
    )
    async with open_store(controller.settings.store_url) as store:
        await store.insert_target(stored)
        await store.insert_schedule(schedule)
    if tell:
        DaemonControl(controller.settings).definitions_changed()
    return schedule
