"""The long-running commands: `serve` runs the controller in the foreground until SIGTERM
or Ctrl-C, telling systemd when it is ready and when it stops, and the hidden `daemon`
is the daemon's own entry point, launched by the controller."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
from typing import TYPE_CHECKING

import structlog

from cronmgr.core.config import Settings
from cronmgr.core.errors import ConfigError
from cronmgr.core.locate import controller_url

if TYPE_CHECKING:
    from aiohttp import web

log = structlog.get_logger("cronmgr.cli")


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the controller until SIGTERM or Ctrl-C."""
    from cronmgr.observability import logs

    logs.configure_logging(settings, to_file=False)
    asyncio.run(_serve(settings))
    return 0


async def _serve(settings: Settings) -> None:
    from cronmgr.controller.listen import bind_listeners, close_all

    # The address first: a port that is taken ends the start-up before the app exists,
    # so no token is generated and no daemon resumed for a controller that never listens.
    sockets = bind_listeners(settings.host, settings.port)
    try:
        await _serve_on(settings, sockets)
    finally:
        close_all(sockets)  # those aiohttp never took (it closes its own)


async def _serve_on(settings: Settings, sockets: list[socket.socket]) -> None:
    from aiohttp import web

    from cronmgr.controller.app import create_app

    # Handlers first: systemd may send SIGTERM the moment it reads READY=1, and that stop
    # must still be a clean one (STOPPING=1, connections closed), not a death by signal.
    stop = _stop_on_signals()
    app = create_app(settings)
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        # A short shutdown timeout: open log-follow streams must not hold up a service stop.
        shutdown_timeout=5.0,
        # aiohttp has no header-read timeout. Its keep-alive timer is the bound: armed when
        # a connection opens and again after each answer, not pushed back by the bytes that
        # trickle in, it closes a connection still waiting for a whole request head (a
        # slowloris client). A handler at work is never cut.
        keepalive_timeout=settings.request_head_timeout_seconds,
        # What a client may push before the body, pinned rather than left to whichever
        # aiohttp is installed. The request line may be 64 KiB: a query with every filter
        # at its longest, percent-encoded, must reach the validation that names the field
        # (aiohttp's own 400 for a longer line is plain text); headers keep aiohttp's 8190.
        max_line_size=65536,
        max_field_size=8190,
        max_headers=128,
    )
    await runner.setup()
    try:
        await _listen(runner, settings, sockets)
        _notify_systemd("READY=1")
        await stop.wait()
    finally:
        _notify_systemd("STOPPING=1")
        await runner.cleanup()
        log.info("controller_stopped")


async def _listen(runner: web.AppRunner, settings: Settings, sockets: list[socket.socket]) -> None:
    from aiohttp import web

    from cronmgr.controller.listen import why_not

    for sock in sockets:
        try:
            await web.SockSite(runner, sock).start()
        except OSError as exc:  # another program bound the port since, and listens first
            raise ConfigError(why_not(exc, settings.host, settings.port)) from None
    port = sockets[0].getsockname()[1]  # the one chosen, when port 0 asked for any
    url = controller_url(settings.host, port)
    log.info("controller_listening", url=url, token_file=str(settings.token_file))


def _stop_on_signals() -> asyncio.Event:
    """An event that SIGTERM or SIGINT sets."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


def _notify_systemd(state: str) -> None:
    # sdnotify does nothing when NOTIFY_SOCKET is unset, so this is safe outside systemd.
    import sdnotify

    with contextlib.suppress(OSError):
        sdnotify.SystemdNotifier().notify(state)


def cmd_daemon(args: argparse.Namespace, settings: Settings) -> int:
    """The daemon's own entry point (launched by the controller)."""
    from cronmgr.core.launch import LaunchSpec
    from cronmgr.engine import daemon

    return daemon.main(settings, LaunchSpec(args.interval, args.pipeline), args.ready_fd)
