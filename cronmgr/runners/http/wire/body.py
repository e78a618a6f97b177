"""Reading a response's body: decoded chunks to the caller's sink, until it says stop.

httptools frames the body (chunked, by length, or until the connection ends); each piece
is inflated if the response is gzip or deflate, a bounded piece at a time so that a
compression bomb is counted as it grows, and handed to the sink, whose False stops the
read and drops the connection. A redirect's body goes to a `Bounded` sink instead.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator

from cronmgr.runners.http.wire.errors import BodyBroken
from cronmgr.runners.http.wire.messages import Response

INFLATE_CHUNK = 64 * 1024
"""Most bytes inflated from compressed data at a time: a bomb is counted as it grows."""
REDIRECT_BODY_BYTES = 64 * 1024
"""Body of a redirect read at most (to keep its connection); beyond it, it is dropped."""


class BodyReading:
    """The body of a response as a connection reads it (a part of `Connection`)."""

    # The connection's state and what it does with a response, all of `Connection`'s.
    _response: Response | None
    _keep_alive: bool
    drop: Callable[[], None]
    _complete: Callable[[], None]
    _fail: Callable[[Exception], None]

    def on_body(self, body: bytes) -> None:
        response = self._response
        if response is None or response.stopped:
            return
        response.progress = True
        try:
            chunks = response.decoder(body) if response.decoder else (body,)
            for chunk in chunks:
                if chunk and not response.sink(chunk):
                    response.stopped = True
                    self._keep_alive = False
                    self._complete()
                    self.drop()
                    return
        except zlib.error as exc:
            self._fail(BodyBroken(f"cannot decode the body: {exc}"))

    def on_message_complete(self) -> None:
        response = self._response
        if response is not None and response.decoder is not None:
            tail = response.decoder(None)
            for chunk in tail:
                if chunk and not response.sink(chunk):
                    break
        self._complete()


class Bounded:
    """A sink that swallows a redirect's body up to a limit."""

    def __init__(self, limit: int) -> None:
        self._left = limit

    def __call__(self, chunk: bytes) -> bool:
        self._left -= len(chunk)
        return self._left > 0


def decoder(encoding: str) -> Callable[[bytes | None], Iterator[bytes]] | None:
    """Inflates gzip or deflate bodies a bounded piece at a time; None: no decoding."""
    encoding = encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return _Inflater(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return _Inflater(zlib.MAX_WBITS, raw_fallback=True)
    return None


class _Inflater:
    """zlib decompression yielding at most INFLATE_CHUNK bytes per piece, lazily: a sink
    that stops the read stops the inflating too."""

    def __init__(self, wbits: int, raw_fallback: bool = False) -> None:
        self._inflate = zlib.decompressobj(wbits)
        self._raw_fallback = raw_fallback

    def __call__(self, data: bytes | None) -> Iterator[bytes]:
        if data is None:
            return iter((self._inflate.flush(),))
        if self._raw_fallback:
            self._raw_fallback = False
            try:
                first = self._inflate.decompress(data, INFLATE_CHUNK)
            except zlib.error:
                # "deflate" sent as a raw stream, without the zlib header, as some servers do.
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                first = self._inflate.decompress(data, INFLATE_CHUNK)
            return self._rest(first)
        return self._rest(self._inflate.decompress(data, INFLATE_CHUNK))

    def _rest(self, first: bytes) -> Iterator[bytes]:
        yield first
        while self._inflate.unconsumed_tail:
            yield self._inflate.decompress(self._inflate.unconsumed_tail, INFLATE_CHUNK)
