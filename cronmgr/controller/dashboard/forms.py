"""What the dashboard's create and edit forms share: a form's flat fields read as text, the
refusal of the declared model sorted to the fields it names, and the page that shows a
form again with what was typed and the messages next to the fields.

The forms are validated by the very models the API validates its bodies with (through the
API's own create and update paths): a form only turns its flat fields into the model's
shape, so that a bad field gets the API's words.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cronmgr.controller.api.common import BODY
from cronmgr.controller.dashboard.common import Form
from cronmgr.core.errors import InvalidInput


def values_of(form: Form, names: Iterable[str]) -> dict[str, str]:
    """The form's fields `names` as text (a missing one empty), as typed."""
    return {name: _text(form.get(name)) for name in names}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def checked(form: Form, name: str) -> bool:
    """Whether a checkbox was ticked (an unticked one sends nothing)."""
    return form.get(name) is not None


def or_none(text: str) -> str | None:
    """`text` without surrounding blanks; None when nothing is left (the field's default)."""
    text = text.strip()
    return text or None


def form_problem(name: str, message: str) -> InvalidInput:
    """A field the form could not put into the model's shape, worded as the API words
    a bad field."""
    return InvalidInput(
        f"invalid {BODY}: {name}: {message}",
        errors=[{"field": name, "message": message, "type": "form"}],
    )


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a form was refused: the API's summary and each message by the form field it
    concerns (`general` for those no field of the form shows)."""

    summary: str
    fields: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)


def refusal(exc: InvalidInput, names: Iterable[str]) -> Refusal:
    """`exc`'s field errors sorted to the form fields `names` (`retry.max_attempts` takes
    `retry.max_attempts`; `expected_status` takes `expected_status.1`)."""
    known = sorted(names, key=len, reverse=True)
    fields: dict[str, list[str]] = {}
    general: list[str] = []
    for error in exc.errors:
        where = str(error.get("field", ""))
        message = str(error.get("message", ""))
        home = next((n for n in known if where == n or where.startswith(n + ".")), None)
        if home is None:
            general.append(f"{where}: {message}" if where else message)
        else:
            extra = where.removeprefix(home).lstrip(".")
            fields.setdefault(home, []).append(f"{extra}: {message}" if extra else message)
    if not exc.errors:
        general.append(exc.detail)
    return Refusal(exc.detail, fields, general)


def form_context(
    values: Mapping[str, Any], refused: Refusal | None = None, **extra: Any
) -> dict[str, Any]:
    """What a form template shows: the values, and the messages by field when refused."""
    return {
        "values": values,
        "refused": refused,
        "errors": refused.fields if refused else {},
        **extra,
    }
