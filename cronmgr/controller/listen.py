"""The controller's listening sockets, bound before anything else starts.

`cronmgr serve` binds its address first, then builds the app (which may generate the
token and resume the daemon): a port that is taken then ends the start-up with one
sentence naming the port and the settings that change it, and leaves nothing running
that would have no controller.
"""

from __future__ import annotations

import contextlib
import errno
import socket

from cronmgr.core.errors import ConfigError

_PORT_SETTINGS = "--port, CRONMGR_PORT or `port` in the config file"
_HOST_SETTINGS = "--host, CRONMGR_HOST or `host` in the config file"


def bind_listeners(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address `host` resolves to (as aiohttp's TCPSite binds).

    Raises `ConfigError` with one sentence when the address can't be had.
    """
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ConfigError(
            f"cannot listen on {host!r}: {exc.strerror}; set {_HOST_SETTINGS}"
        ) from None
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(addresses):
            bound.append(_listen(family, kind, proto, address, host, port))
    except BaseException:
        close_all(bound)
        raise
    return bound


def _listen(
    family: int, kind: int, proto: int, address: tuple[object, ...], host: str, port: int
) -> socket.socket:
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # One socket per family, as asyncio does: the IPv4 address gets its own.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        # Bound, not listening: connections are refused until the server starts
        # listening, once the app is ready (its token written), as before.
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(why_not(exc, host, port)) from None
    sock.setblocking(False)
    return sock


def why_not(exc: OSError, host: str, port: int) -> str:
    """One sentence on why `host`:`port` can't be listened on, naming the settings."""
    where = f"port {port} on {host}"
    if exc.errno == errno.EADDRINUSE:
        return f"{where} is in use; choose another port with {_PORT_SETTINGS}"
    if exc.errno == errno.EACCES:
        return f"{where} is not allowed to this user; choose another port with {_PORT_SETTINGS}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; set {_HOST_SETTINGS}"
    return f"cannot listen on {where}: {exc.strerror}; check {_HOST_SETTINGS} and {_PORT_SETTINGS}"


def close_all(sockets: list[socket.socket]) -> None:
    """Close every socket of `sockets` (those not handed to the server yet)."""
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.close()
