"""Log lines for people: `cronmgr logs` on a terminal turns each JSON line into
`time  level  event  key=value ...`, the first three in aligned columns, the level in
colour, a traceback indented under its line.

Which fields show, and in what order:

- `timestamp`, `level` and `event` are the columns (the time cut to milliseconds).
- The fields that say what a line is about come first, in a fixed order (`KEY_FIELDS`:
  run, schedule, pipeline, step, target, status, error, ...), then the others as the
  line has them.
- `node` and `pid` are on every line the daemon writes and the same on all of them, so
  they show only when they change (on the first line, and after a restart or from
  another node): the change is news, the repetition is noise.
- A field whose value is null (`error=null` on a success) says nothing and is left out.
- `exception` and `stack` (structlog's rendered tracebacks) are printed under the line,
  indented, one line of the traceback a line.

Nothing from the log reaches the terminal as a control character: every one (ANSI escape
sequences, newlines, carriage returns, C1 codes, bidirectional overrides) is written as
an escape such as `\\x1b`, so a value cannot move the cursor, recolour or rewrite what is
shown. Long values are cut (`MAX_VALUE` characters). A line that is not a JSON object is
printed as it is, escaped the same way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, TextIO

import orjson

KEY_FIELDS = (
    "run_id",
    "schedule_id",
    "pipeline",
    "step",
    "target",
    "status",
    "error",
    "error_type",
    "exit_code",
    "duration_ms",
    "attempt",
)
"""Shown first, in this order, after the event."""

COLUMNS = ("timestamp", "level", "event")
SHOWN_ON_CHANGE = ("node", "pid")
BLOCK_FIELDS = ("exception", "stack")
MAX_VALUE = 300
"""Characters of one value shown; the rest is cut and counted."""
EVENT_WIDTH = 22
MAX_EVENT_WIDTH = 32
LEVEL_WIDTH = 8
TIME_WIDTH = 24
INDENT = "    "

_SGR = {"debug": "2", "info": "32", "warning": "33", "error": "31", "critical": "1;31"}
_RESET = "\x1b[0m"
# C0 and C1 controls, DEL, the line and paragraph separators and the bidirectional
# controls: anything a terminal may act on instead of showing.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_PLAIN = re.compile(r"[^\s\"'=\\]+")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """`text` with every control character written as a visible escape."""
    return _CONTROL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def use_colour(choice: str, stream: TextIO) -> bool:
    """Whether to colour: `always`, `never`, or (`auto`) on a terminal unless NO_COLOR is
    set (https://no-color.org) or the terminal is dumb."""
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


class LineRenderer:
    """Renders log lines one by one; remembers what `SHOWN_ON_CHANGE` fields last were
    and widens the event column for a long event name (up to `MAX_EVENT_WIDTH`)."""

    def __init__(self, *, colour: bool) -> None:
        self._colour = colour
        self._last: dict[str, Any] = {}
        self._event_width = EVENT_WIDTH

    def render(self, text: str) -> str:
        """One log line (JSON or not) for people; may span lines (a traceback)."""
        try:
            record = orjson.loads(text)
        except orjson.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            return escape(text)
        head = self._columns(record)
        fields = " ".join(self._field(key, value) for key, value in self._fields(record))
        lines = [f"{head}  {fields}".rstrip()]
        for name in BLOCK_FIELDS:
            lines.extend(_block(record.get(name)))
        return "\n".join(lines)

    def _columns(self, record: Mapping[str, Any]) -> str:
        stamp = _time(record.get("timestamp")).ljust(TIME_WIDTH)
        level = _text(record.get("level", "")).lower()
        event = _text(record.get("event", ""))
        self._event_width = max(self._event_width, min(len(event), MAX_EVENT_WIDTH))
        # Padded outside the colour codes, so that a line without fields ends in none.
        shown_level = self._paint(level, _SGR.get(level)) + _pad(level, LEVEL_WIDTH)
        shown_event = self._paint(event, "1") + _pad(event, self._event_width)
        return f"{stamp}  {shown_level}  {shown_event}"

    def _fields(self, record: Mapping[str, Any]) -> list[tuple[str, Any]]:
        """The fields after the columns, key fields first; unchanged node/pid left out."""
        skipped = {*COLUMNS, *BLOCK_FIELDS, *SHOWN_ON_CHANGE}
        first = [(key, record[key]) for key in KEY_FIELDS if key in record]
        rest = [(k, v) for k, v in record.items() if k not in skipped and k not in KEY_FIELDS]
        changed = []
        for key in SHOWN_ON_CHANGE:
            if key in record and self._last.get(key) != record[key]:
                self._last[key] = record[key]
                changed.append((key, record[key]))
        return [(str(k), v) for k, v in [*first, *rest, *changed] if v is not None]

    def _field(self, key: str, value: Any) -> str:
        return f"{self._paint(escape(key) + '=', '2')}{_value(value)}"

    def _paint(self, text: str, sgr: str | None) -> str:
        if not self._colour or not sgr:
            return text
        return f"\x1b[{sgr}m{text}{_RESET}"


def _pad(text: str, width: int) -> str:
    return " " * (width - len(text))


def _text(value: Any) -> str:
    return escape(value if isinstance(value, str) else orjson.dumps(value).decode())


def _time(value: Any) -> str:
    """An ISO 8601 time as the daemon writes it, cut to milliseconds."""
    if not isinstance(value, str):
        return "" if value is None else _text(value)
    match = re.fullmatch(
        r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,3})?\d*(Z|[+-]\d\d:\d\d)?", value
    )
    if match is None:
        return escape(value)
    whole, fraction, zone = match.groups()
    return f"{whole}{(fraction or '.').ljust(4, '0')}{zone or ''}"


def _value(value: Any) -> str:
    """A value as `key=` is followed: bare when it is one plain word, else quoted."""
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    cut = ""
    if len(text) > MAX_VALUE:
        cut = f"…(+{len(text) - MAX_VALUE} chars)"
        text = text[:MAX_VALUE]
    if isinstance(value, str) and not _PLAIN.fullmatch(text):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return escape(text) + cut


def _block(value: Any) -> list[str]:
    """A traceback's lines, indented; nothing when there is none."""
    if value is None or value == "":
        return []
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return [INDENT + escape(line) for line in text.rstrip("\n").split("\n")]
