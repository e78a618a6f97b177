"""Reading a response's head: status line and headers through httptools, within caps.

The caps (`MAX_LINE_BYTES`, `MAX_HEADERS`, `MAX_HEAD_BYTES`) bound what a target can make
the client hold before its body; one over a limit fails the attempt with `HeadTooLarge`
and drops the connection. When the head is complete it says how the body is framed and
decoded, and whether a redirect's body is swallowed instead of handed to the caller.
"""

from __future__ import annotations

from collections.abc import Callable

import httptools

from cronmgr.runners.http.wire.body import REDIRECT_BODY_BYTES, Bounded, decoder
from cronmgr.runners.http.wire.errors import BodyBroken, HeadTooLarge, Malformed
from cronmgr.runners.http.wire.messages import REDIRECTS, Response

# What a target may send before its body. httptools keeps a header's value in memory
# until its line ends and this client keeps every header, so without these a target
# sending `X-Big: ` and then a gigabyte with no line end would be held whole. The figures
# are what servers themselves accept (nginx and aiohttp take 8 KiB a line, Apache 100
# headers of 8 KiB), so no sane answer is refused; one over a limit is a failed attempt
# and its connection is dropped.
MAX_LINE_BYTES = 8 * 1024
"""Longest status line or header line (name, colon and value)."""
MAX_HEADERS = 100
"""Most header lines in a response (its trailers counted too)."""
MAX_HEAD_BYTES = 64 * 1024
"""Most bytes of a response's head, and most bytes in a row without a byte of body after
it (chunk framing, trailers): what the parser may hold of a line not yet ended."""


class HeadParsing:
    """The head of a response as a connection reads it (a part of `Connection`)."""

    # The connection's state and what it does with a response, all of `Connection`'s.
    _response: Response | None
    _parser: httptools.HttpResponseParser | None
    _keep_alive: bool
    _quiet: int
    answered: bool
    drop: Callable[[], None]
    _complete: Callable[[], None]
    _fail: Callable[[Exception], None]

    def data_received(self, data: bytes) -> None:
        if self._response is None or self._parser is None:
            self.drop()  # bytes nobody asked for: the connection cannot be trusted
            return
        self.answered = True
        view = memoryview(data)
        # Fed at most what is left of MAX_HEAD_BYTES at a time, so that a head (or a run
        # of framing) that never ends is refused once it has that much, whatever the
        # size of the reads. Each turn feeds a byte at least: the loop ends.
        while view and self._response is not None:
            room = MAX_HEAD_BYTES - self._quiet
            if room <= 0:
                self._refuse(self._quiet_error())
                return
            piece, view = view[:room], view[room:]
            self._feed(piece)

    def _feed(self, piece: memoryview) -> None:
        response, parser = self._response, self._parser
        assert response is not None and parser is not None
        response.progress = False
        try:
            parser.feed_data(piece)
        except httptools.HttpParserError as exc:
            if self._response is not None and not response.stopped:
                if response.headers_complete:
                    self._fail(BodyBroken(f"malformed response: {exc}"))
                else:
                    self._fail(Malformed(str(exc)))
        self._quiet = 0 if response.progress else self._quiet + len(piece)

    def _quiet_error(self) -> HeadTooLarge:
        response = self._response
        if response is None or not response.headers_complete:
            return HeadTooLarge(f"response head longer than {MAX_HEAD_BYTES} bytes")
        return HeadTooLarge(f"more than {MAX_HEAD_BYTES} bytes of chunk framing or trailers")

    def _refuse(self, exc: HeadTooLarge) -> None:
        """Fail the response with `exc` and drop the connection: nothing more is read."""
        self.drop()
        self._fail(exc)

    # --- httptools callbacks

    def on_status(self, status: bytes) -> None:
        response = self._response
        if response is not None:
            response.reason += status
            if len(response.reason) + len(b"HTTP/1.1 200 ") > MAX_LINE_BYTES:
                self._refuse(HeadTooLarge(f"status line longer than {MAX_LINE_BYTES} bytes"))

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self._response
        if response is None:
            return
        response.header_lines += 1
        if len(name) + len(value) + 1 > MAX_LINE_BYTES:
            self._refuse(HeadTooLarge(f"a header line longer than {MAX_LINE_BYTES} bytes"))
        elif response.header_lines > MAX_HEADERS:
            self._refuse(HeadTooLarge(f"more than {MAX_HEADERS} header lines"))
        else:
            response.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        response, parser = self._response, self._parser
        if response is None or parser is None:
            return
        response.status = parser.get_status_code()
        response.headers_complete = response.progress = True
        self._keep_alive = parser.should_keep_alive()
        headers = response.headers
        response.until_eof = (
            "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "")
            and response.status not in (204, 304)
            and response.status >= 200
        )
        response.decoder = decoder(headers.get("content-encoding", ""))
        if response.follow_redirects and response.status in REDIRECTS and "location" in headers:
            response.sink = Bounded(REDIRECT_BODY_BYTES)  # not the body anyone asked for
        elif response.on_head is not None:
            reason = response.reason.decode("latin-1", errors="replace")
            response.on_head(response.status, reason, headers)
        if response.method == "HEAD" and response.status >= 200:
            # No body follows, whatever Content-Length says; a response ending with the
            # connection would have had one, so that connection is not kept.
            self._keep_alive = self._keep_alive and not response.until_eof
            self._complete()
