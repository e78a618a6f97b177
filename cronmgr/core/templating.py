"""Body templates: one sandboxed Jinja2 environment, checked when saved, bounded when run.

A template is checked when it is saved (the API, the pipeline files) the way it is run, so
a template that was accepted always compiles: its size, its nesting depth (Jinja2's parser
and Python's compiler both recurse, and Python refuses more than 20 nested blocks), and
its syntax. When it runs, the sandbox refuses to build huge values (`'x' * 10**9`,
`9 ** 9 ** 9`) instead of letting one template take the daemon's memory or CPU.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_TEMPLATE_CHARS = 65536
MAX_TEMPLATE_DEPTH = 32
"""Brackets and block tags open at once: deep enough for any real body, far below where
Jinja2's parser or Python's compiler would fail."""
MAX_BLOCK_DEPTH = 16
"""`{% for %}`/`{% if %}`… open at once: Python refuses more than 20 nested blocks."""
MAX_RENDERED_CHARS = 1024 * 1024
"""The largest value `*` may build, as large as a request body may be."""
MAX_POWER_BITS = 4096

_OPENING = {"(", "[", "{"}
_CLOSING = {")", "]", "}"}
_BLOCKS = {"if", "for", "macro", "call", "filter", "block", "with", "autoescape", "raw", "set"}


class TemplateProblem(ValueError):
    """A template that can't be saved, with the reason in words."""


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox with `*` and `**` bounded: a template can't allocate without limit."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        """`left operator right`, refused when the result would be out of bounds."""
        if operator_name == "**":
            _check_power(left, right)
            return operator.pow(left, right)
        _check_repeat(left, right)
        return operator.mul(left, right)


def _check_repeat(left: Any, right: Any) -> None:
    for seq, times in ((left, right), (right, left)):
        sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
        if sized and len(seq) * times > MAX_RENDERED_CHARS:
            raise jinja2.TemplateRuntimeError(
                f"a repeated value of more than {MAX_RENDERED_CHARS} items is refused"
            )


def _check_power(base: Any, exponent: Any) -> None:
    integers = isinstance(base, int) and isinstance(exponent, int) and abs(base) > 1
    if integers and exponent * abs(base).bit_length() > MAX_POWER_BITS:
        raise jinja2.TemplateRuntimeError(f"a power of more than {MAX_POWER_BITS} bits is refused")


def environment() -> BoundedSandbox:
    """The environment body templates are compiled in, for checking and for running."""
    # StrictUndefined: a misspelt variable is an error, not "".
    return BoundedSandbox(autoescape=False, undefined=jinja2.StrictUndefined)


@functools.lru_cache(maxsize=1024)
def check_template(text: str) -> None:
    """TemplateProblem unless `text` can be saved: small, shallow and compiling.

    Stored targets are read back through this check too; the many that share a body
    template compile it once (a compile is about 0.3 ms).
    """
    if len(text) > MAX_TEMPLATE_CHARS:
        raise TemplateProblem(f"longer than {MAX_TEMPLATE_CHARS} characters")
    env = environment()
    _check_depth(env, text)
    try:
        env.from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(f"line {exc.lineno}: {exc.message}") from exc
    except (SyntaxError, RecursionError, MemoryError) as exc:
        raise TemplateProblem(f"can't be compiled: {type(exc).__name__}") from exc


def _check_depth(env: jinja2.Environment, text: str) -> None:
    # The lexer is a loop, not a recursion, so it measures a template of any depth safely.
    depth = blocks = 0
    expecting_tag = False
    try:
        for lineno, kind, value in env.lex(text):
            if kind == "whitespace":
                continue
            if kind == "operator" and value in _OPENING:
                depth += 1
            elif kind == "operator" and value in _CLOSING:
                depth = max(0, depth - 1)
            elif kind == "block_begin":
                expecting_tag = True
                continue
            elif expecting_tag and kind == "name":
                blocks = max(0, blocks + _block_change(value))
            expecting_tag = False
            if depth > MAX_TEMPLATE_DEPTH or blocks > MAX_BLOCK_DEPTH:
                raise TemplateProblem(
                    f"line {lineno}: nested more than {MAX_TEMPLATE_DEPTH} brackets or "
                    f"{MAX_BLOCK_DEPTH} blocks deep"
                )
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(f"line {exc.lineno}: {exc.message}") from exc


def _block_change(tag: str) -> int:
    if tag in _BLOCKS and tag != "set":
        return 1
    if tag.startswith("end") and tag[3:] in _BLOCKS:
        return -1
    return 0
