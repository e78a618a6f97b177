"""What goes over the wire: a request, where it goes, what came back, what is being read.

`Request` is what a caller sends, `Origin` where a connection goes (the pool's key),
`Reply` the final answer but for its body, which went to the caller's `Sink` chunk by
chunk; `Response` is the state of the response a connection is reading.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

Sink = Callable[[bytes], bool]
"""Takes each decoded body chunk; False stops the read (the connection is then dropped)."""
OnHead = Callable[[int, str, Mapping[str, str]], None]
"""Told the status, reason and headers of the final response as soon as they are in."""
Resolve = Callable[[str, int], Awaitable[list[tuple[str, int]]]]
"""(host, port) to the addresses to try, in order."""

REDIRECTS = frozenset({301, 302, 303, 307, 308})


class Origin(NamedTuple):
    """Where a connection goes; connections are pooled per origin."""

    scheme: str
    host: str
    port: int
    verify: bool


@dataclass(slots=True)
class Reply:
    """What came back, the body aside (it went to the sink)."""

    status: int
    reason: str
    headers: dict[str, str]
    """Response headers by lower-case name (a repeated header keeps its last value)."""
    url: str
    """The URL that answered, after any redirects."""


@dataclass(slots=True)
class Request:
    """One request to send."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None = None
    follow_redirects: bool = True
    max_redirects: int = 10
    connect_timeout: float = 10.0
    verify_tls: bool = True


@dataclass(slots=True)
class Response:
    """The response being read on a connection."""

    method: str
    url: str
    sink: Sink
    on_head: OnHead | None
    follow_redirects: bool
    done: asyncio.Future[Reply]
    status: int = 0
    reason: bytearray = field(default_factory=bytearray)
    headers: dict[str, str] = field(default_factory=dict)
    decoder: Any = None
    until_eof: bool = False
    headers_complete: bool = False
    stopped: bool = False
    header_lines: int = 0
    progress: bool = False
    """Whether the head ended or a body byte arrived in the bytes fed last."""
