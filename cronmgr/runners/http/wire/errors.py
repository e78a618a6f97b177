"""What the lean client raises: a request that failed before a complete response.

One class per way a request fails - the name did not resolve, the connection or the TLS
handshake failed, connecting timed out, the server hung up, the answer is not HTTP or
broke off, its head went over a limit, too many redirects, a URL that is not http(s) -
each holding what the runner needs to word it.
"""

from __future__ import annotations

import ssl


class WireError(Exception):
    """A request that failed before a complete response."""


class ResolveFailed(WireError):
    """The host name did not resolve."""

    def __init__(self, host: str, error: OSError) -> None:
        super().__init__(f"cannot resolve {host!r}: {error}")
        self.host, self.os_error = host, error


class ConnectFailed(WireError):
    """No connection could be opened (refused, unreachable)."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        super().__init__(f"cannot connect to {host}:{port}: {error}")
        self.host, self.port, self.os_error = host, port, error


class TLSFailed(WireError):
    """The TLS handshake failed; `certificate` when it was the certificate."""

    def __init__(self, host: str, error: ssl.SSLError) -> None:
        super().__init__(f"TLS with {host} failed: {error}")
        self.host, self.os_error = host, error
        self.certificate = isinstance(error, ssl.SSLCertVerificationError)


class ConnectTimeout(TimeoutError):
    """Connecting took longer than the connect timeout."""


class Disconnected(WireError):
    """The server closed the connection before a complete response."""


class BodyBroken(WireError):
    """The response could not be read to its end (bad framing, bad encoding)."""


class Malformed(BodyBroken):
    """The status line or headers could not be parsed: whatever answered is not HTTP."""


class HeadTooLarge(WireError):
    """The response's status line or headers went over a limit (`MAX_LINE_BYTES`,
    `MAX_HEADERS`, `MAX_HEAD_BYTES`)."""


class TooManyRedirects(WireError):
    """More redirects than allowed."""


class UnsupportedURL(WireError):
    """Not an absolute http or https URL."""
