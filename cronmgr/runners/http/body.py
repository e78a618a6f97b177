"""A response body as far as a target's checks need it: its first bytes, its size, its cut.

The first `KEEP_BYTES` are kept for the assertions and the first `EXCERPT_BYTES` of them
shown in the attempt's output tail; the rest is only counted, and reading stops at the
runner's cap, which marks the body truncated.
"""

from __future__ import annotations

import codecs
import functools

#: Body bytes kept in memory for the assertions (contains, regex, JSON field).
KEEP_BYTES = 64 * 1024
#: Body bytes shown in a result's `output_tail`.
EXCERPT_BYTES = 2 * 1024


class Body:
    """A response body as far as it matters: its first bytes, its size, whether it was cut."""

    def __init__(self, max_bytes: int) -> None:
        self.kept = bytearray()
        self.size = 0
        self.truncated = False
        self._max_bytes = max_bytes

    def take(self, chunk: bytes) -> bool:
        """Count a chunk, keeping the first `KEEP_BYTES`; False once the cap is reached
        (the caller then stops reading)."""
        self.size += len(chunk)
        room = KEEP_BYTES - len(self.kept)
        if room > 0:
            self.kept += chunk[:room]
        if self.size >= self._max_bytes:
            self.truncated = True
            return False
        return True

    @property
    def complete(self) -> bool:
        """Whether `kept` is the whole body."""
        return self.size == len(self.kept) and not self.truncated

    @functools.cached_property
    def text(self) -> str:
        """The kept bytes as UTF-8, bad bytes replaced."""
        return self.kept.decode("utf-8", errors="replace")

    def excerpt(self) -> str:
        """The first `EXCERPT_BYTES` as text, without a character cut in half at the end."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return decoder.decode(bytes(self.kept[:EXCERPT_BYTES]), final=False)

    def scope(self) -> str:
        """What the assertions saw, in words."""
        return "body" if self.complete else f"first {len(self.kept)} bytes of the body"
