"""`cronmgr logs` for people and for programs.

The renderer's rules first (alignment, odd and hostile values), then the real command
against a real controller and daemon: under a pseudo-terminal it prints coloured, aligned
lines with tracebacks indented; through a pipe, or with --json, the JSON lines unchanged.
"""

from __future__ import annotations

import io
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from support import Controller, wait_for
from test_cli import clean_env, cronmgr, write_log

from cronmgr.cli.log_lines import MAX_VALUE, LineRenderer, escape, use_colour

SGR = re.compile(r"\x1b\[[0-9;]*m")
STAMP = "2030-01-02T03:04:05.678901Z"


def line(**fields: Any) -> str:
    """A log line as the daemon writes it."""
    record = {"level": "info", "timestamp": STAMP, **fields}
    return orjson.dumps(record).decode()


def plain(text: str) -> str:
    """`text` without the colour codes."""
    return SGR.sub("", text)


def render(*lines: str, colour: bool = False) -> list[str]:
    renderer = LineRenderer(colour=colour)
    return [renderer.render(text) for text in lines]


# --- the renderer ---------------------------------------------------------------------------


def test_the_columns_line_up_and_the_key_fields_come_first() -> None:
    shown = render(
        line(event="run_started", job="x", schedule_id="s1", run_id="r1"),
        line(event="step_output", level="warning", line="hi", run_id="r1", step="fetch"),
        line(event="daemon_ready"),
    )
    assert shown[0] == (
        "2030-01-02T03:04:05.678Z  info      run_started             run_id=r1 schedule_id=s1 job=x"
    )
    assert shown[1].endswith("  step_output             run_id=r1 step=fetch line=hi")
    assert shown[2].endswith("  daemon_ready")  # nothing after the event: no padding either
    event_at = {
        text.index(name) for text, name in zip(shown, ["run_", "step_", "daemon_"], strict=True)
    }
    assert len(event_at) == 1
    assert {text.index("run_id") for text in shown[:2]} == {shown[0].index("run_id")}


def test_colour_marks_the_level_only_when_asked() -> None:
    error, info = render(line(event="boom", level="error"), line(event="ok"), colour=True)
    assert "\x1b[31merror\x1b[0m" in error and "\x1b[32minfo\x1b[0m" in info
    assert plain(error).index("boom") == plain(info).index("ok")
    assert "\x1b" not in "".join(render(line(event="boom", level="error")))


def test_node_and_pid_show_when_they_change_and_nulls_not_at_all() -> None:
    first, same, restarted = render(
        line(event="a", node="n1", pid=10, error=None),
        line(event="b", node="n1", pid=10, signal=None),
        line(event="c", node="n1", pid=11),
    )
    assert first.endswith("  a                       node=n1 pid=10")
    assert same.endswith("  b")
    assert restarted.endswith("  c                       pid=11")


def test_a_traceback_is_indented_under_its_line() -> None:
    try:
        raise ValueError("the disk said no")
    except ValueError:
        text = traceback.format_exc()
    (shown,) = render(line(event="run_crashed", level="error", run_id="r9", exception=text))
    head, *body = shown.split("\n")
    assert head.endswith("run_crashed             run_id=r9")
    assert body[0] == "    Traceback (most recent call last):"
    assert body[-1] == "    ValueError: the disk said no"
    assert all(row.startswith("    ") for row in body)


def test_lines_that_are_not_json_objects_are_printed_as_they_are() -> None:
    texts = ["a plain line", "[1, 2]", "42", '"just a string"', "{not json", ""]
    assert render(*texts) == texts


def test_nothing_from_the_log_reaches_the_terminal_as_a_control_character() -> None:
    """ANSI sequences, newlines, carriage returns, C1 codes and bidi overrides in any part
    of a line (event, level, key, value, traceback, a line that is no JSON) come out as
    visible escapes: the only escape sequences are the colour codes the renderer adds."""
    evil = "red\x1b[31m\x1b]0;title\x07\r\nfake line\x9b2J\u202eevil\x00"
    lines = [
        line(event=evil, level=evil, run_id=evil, exception=evil, **{evil: evil}),
        evil,
        line(event="x", nested={"k": [evil]}),
    ]
    for colour in (False, True):
        shown = "\n".join(render(*lines, colour=colour))
        rest = plain(shown)
        assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]", rest), repr(rest)
        assert set(SGR.findall(shown)) <= {"\x1b[0m", "\x1b[1m", "\x1b[2m", "\x1b[32m"}
        assert "\\x1b[31m" in rest and "\\r\\n" in rest and "\\x9b" in rest and "\\u202e" in rest
        # One line per log line, plus the traceback's two (it has one newline): no more.
        assert len(shown.split("\n")) == 5
    assert escape("tab\there") == "tab\\there"


def test_huge_and_odd_values_stay_on_one_readable_line() -> None:
    huge, odd, empty = render(
        line(event="big", blob="x" * 100_000),
        line(event="odd", level=5, timestamp=12, flag=True, ratio=0.5, items=[1, "two", None]),
        orjson.dumps({}).decode(),
    )
    assert len(huge) < MAX_VALUE + 200
    assert huge.endswith("x" * 10 + f"…(+{100_000 - MAX_VALUE} chars)")
    assert "  5  " in odd and odd.startswith("12 ")
    assert 'flag=true ratio=0.5 items=[1,"two",null]' in odd
    assert empty.strip() == ""
    quoted, spaced = render(line(event="q", say='he said "hi"'), line(event="s", v="a b"))
    assert quoted.endswith(r'say="he said \"hi\""') and spaced.endswith('v="a b"')


def test_colour_follows_no_color_the_terminal_and_the_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert use_colour("auto", Terminal()) and not use_colour("auto", io.StringIO())
    assert use_colour("always", io.StringIO()) and not use_colour("never", Terminal())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour("auto", Terminal()) and use_colour("always", Terminal())
    monkeypatch.setenv("NO_COLOR", "")  # empty: not set, says the convention
    monkeypatch.setenv("TERM", "dumb")
    assert not use_colour("auto", Terminal())


# --- the command, on a terminal and through a pipe -----------------------------------------


def terminal_env(controller: Controller, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in controller.env().items() if k != "NO_COLOR"}
    return {**env, "TERM": "xterm-256color", **extra}


def on_terminal(*args: str, env: dict[str, str], until: Callable[[str], bool] | None = None) -> str:
    """Run `cronmgr ARGS` with its stdout on a pseudo-terminal; what it printed, with the
    terminal's CR LF turned back into LF. With `until`, the command is interrupted (Ctrl-C)
    once the output satisfies it, and must then end cleanly."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "cronmgr", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.PIPE,
    )
    os.close(follower)
    try:
        out = _read(leader, process, until)
        _, err = process.communicate(timeout=15)
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err.decode()
    return out.replace("\r\n", "\n")


def _read(
    leader: int, process: subprocess.Popen[bytes], until: Callable[[str], bool] | None
) -> str:
    deadline = time.monotonic() + 30
    data = b""
    interrupted = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the command closed the terminal (it ended)
                break
            if not chunk:
                break
            data += chunk
        elif process.poll() is not None:
            break
        if until and not interrupted and until(data.decode(errors="replace")):
            process.send_signal(signal.SIGINT)
            interrupted = True
    else:
        pytest.fail(f"the command did not finish; it printed {data[-2000:]!r}")
    return data.decode()


def daemon_lines(controller: Controller) -> list[str]:
    """Start the daemon on the quick pipeline, wait for a finished run, stop it; its lines."""
    env = controller.env()
    assert cronmgr("start", "--pipeline", "quick", env=env).returncode == 0
    wait_for(
        lambda: '"pipeline_finished"' in controller.settings.log_file.read_text(),
        what="the daemon to log a finished run",
    )
    assert cronmgr("stop", env=env).returncode == 0
    return controller.settings.log_file.read_text().splitlines()


@pytest.mark.timeout(90)
def test_on_a_terminal_the_lines_are_coloured_and_aligned(controller: Controller) -> None:
    lines = daemon_lines(controller)
    out = on_terminal("logs", "-n", str(len(lines)), env=terminal_env(controller))
    assert "\x1b[32minfo\x1b[0m" in out
    shown = plain(out).splitlines()
    assert len(shown) == len(lines)
    records = [orjson.loads(text) for text in lines]
    columns = set()
    for text, record in zip(shown, records, strict=True):
        assert text.startswith(record["timestamp"][:23])
        columns.add(text.index(record["event"]))
        if "run_id" in record:
            assert f"  run_id={record['run_id']}" in text
    assert len(columns) == 1, "the event column moves"
    assert any("pipeline_finished" in text and "status=succeeded" in text for text in shown)


@pytest.mark.timeout(90)
def test_piped_or_json_the_lines_are_the_daemons_unchanged(controller: Controller) -> None:
    lines = daemon_lines(controller)
    expected = "".join(text + "\n" for text in lines[-5:])
    assert cronmgr("logs", "-n", "5", env=controller.env()).stdout == expected
    assert cronmgr("logs", "-n", "5", "--color", "never", env=controller.env()).stdout == expected
    run_id = next(orjson.loads(text)["run_id"] for text in lines if '"run_id"' in text)
    mine = [text for text in lines if orjson.loads(text).get("run_id") == run_id]
    filtered = cronmgr("logs", "-n", "100", "--run", run_id, env=controller.env()).stdout
    assert filtered == "".join(text + "\n" for text in mine)
    on_tty = on_terminal("logs", "-n", "5", "--json", env=terminal_env(controller))
    assert on_tty == expected
    piped_colour = cronmgr("logs", "-n", "5", "--color", "always", env=controller.env())
    assert "\x1b[32minfo\x1b[0m" in piped_colour.stdout


@pytest.mark.timeout(60)
def test_on_a_terminal_a_traceback_is_indented_and_no_color_is_honoured(
    controller: Controller,
) -> None:
    try:
        raise RuntimeError("step runner gave up")
    except RuntimeError:
        text = traceback.format_exc()
    write_log(
        controller.settings,
        line(event="before"),
        line(event="run_crashed", level="error", run_id="r1", exception=text),
        "not json \x1b[2J at all",
    )
    out = on_terminal("logs", env=terminal_env(controller, NO_COLOR="1"))
    assert "\x1b" not in out
    rows = out.splitlines()
    crash = next(i for i, row in enumerate(rows) if "run_crashed" in row)
    assert rows[crash].endswith("run_crashed             run_id=r1")
    body = rows[crash + 1 : -1]
    assert body[0] == "    Traceback (most recent call last):"
    assert body[-1] == "    RuntimeError: step runner gave up"
    assert rows[-1] == "not json \\x1b[2J at all"


@pytest.mark.timeout(60)
def test_follow_on_a_terminal_renders_new_lines_until_ctrl_c(controller: Controller) -> None:
    write_log(controller.settings, line(event="old_line"))
    written = []

    def new_line_shown(out: str) -> bool:
        if "old_line" in out and not written:  # the follow has begun: log one more line
            write_log(controller.settings, line(event="new_line", level="warning", step="s"))
            written.append(True)
        return "new_line" in out and out.endswith("\n")

    out = on_terminal("logs", "-f", "-n", "1", env=terminal_env(controller), until=new_line_shown)
    assert "\x1b[33mwarning\x1b[0m" in out
    shown = plain(out).splitlines()
    assert [row.split()[2] for row in shown] == ["old_line", "new_line"]
    assert shown[1].endswith("  step=s")


def test_logs_rejects_an_unknown_colour_choice() -> None:
    result = cronmgr("logs", "--color", "sometimes", env=clean_env())
    assert result.returncode == 2 and "sometimes" in result.stderr
