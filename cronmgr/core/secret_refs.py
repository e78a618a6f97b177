"""`${env:NAME}` secret references: resolved at request time, never shown resolved.

A target stores references, not values: `Authorization: Bearer ${env:API_TOKEN}`. The HTTP
runner resolves them from the daemon's environment just before a request, through a
`SecretResolver` that remembers what it resolved, so that any text it produces afterwards
(an error message, a response excerpt that echoes a header) can be scrubbed back to the
references.

`redact()` is what the API and the logs show instead of a value:

- headers named `Authorization`, `Cookie`, `X-Api-Key` or `Proxy-Authorization` become
  `***` whatever they hold;
- in text, the password of a URL's user info and the values of credential-like query
  parameters (`token`, `api_key`, ...) become `***`; a `${env:NAME}` reference stays, as
  it names a secret without revealing it;
- with a `SecretResolver`, every value it resolved is replaced by its reference.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import overload

REDACTED = "***"
#: Headers whose values are credentials by nature, literal or not.
SENSITIVE_HEADERS = frozenset({"authorization", "cookie", "x-api-key", "proxy-authorization"})
#: Query parameters whose values are credentials by convention.
SENSITIVE_PARAMS = (
    "access_token",
    "api_key",
    "apikey",
    "client_secret",
    "key",
    "password",
    "secret",
    "sig",
    "signature",
    "token",
)
#: Resolved values shorter than this are not scrubbed from free text: a one- or two-letter
#: "secret" would turn every message into noise, and no real credential is that short.
MIN_SCRUB_CHARS = 4

ENV_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*):(?!\$\{env:)[^/@\s]*@")
_PARAM = re.compile(
    r"(?P<head>[?&;](?:" + "|".join(SENSITIVE_PARAMS) + r")=)(?!\$\{env:)[^&#;\s]+",
    re.IGNORECASE,
)


class MissingSecret(Exception):
    """A `${env:NAME}` reference names a variable the daemon's environment does not have."""

    def __init__(self, names: list[str], where: str) -> None:
        self.names = names
        self.where = where
        listed = ", ".join(names)
        noun = "variable" if len(names) == 1 else "variables"
        verb = "is" if len(names) == 1 else "are"
        super().__init__(
            f"{where} references environment {noun} {listed}, which {verb} not set in the"
            " daemon's environment"
        )


def references(text: str) -> list[str]:
    """The variable names `text` references, in order, without repeats."""
    return list(dict.fromkeys(ENV_REFERENCE.findall(text)))


class SecretResolver:
    """Resolves references from an environment and remembers the values, to scrub them."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._resolved: dict[str, str] = {}

    def resolve(self, text: str, where: str) -> str:
        """`text` with every reference replaced by its value; MissingSecret names the gaps.

        `where` says what holds `text` ("the URL", "header 'Authorization'") for the error.
        """
        if "${env:" not in text:
            return text  # most texts reference nothing: no pattern search
        names = references(text)
        missing = [name for name in names if name not in self._environ]
        if missing:
            raise MissingSecret(missing, where)
        for name in names:
            self._resolved[name] = self._environ[name]
        return ENV_REFERENCE.sub(lambda match: self._environ[match.group(1)], text)

    def scrub(self, text: str) -> str:
        """`text` with every value resolved so far replaced by its reference."""
        if not self._resolved:
            return text
        # Longest first, so a value containing another is replaced whole.
        for name, value in sorted(self._resolved.items(), key=lambda item: -len(item[1])):
            if len(value) >= MIN_SCRUB_CHARS:
                text = text.replace(value, f"${{env:{name}}}")
        return text


@overload
def redact(value: str, secrets: SecretResolver | None = None) -> str: ...


@overload
def redact(value: Mapping[str, str], secrets: SecretResolver | None = None) -> dict[str, str]: ...


def redact(
    value: str | Mapping[str, str], secrets: SecretResolver | None = None
) -> str | dict[str, str]:
    """What may be shown of a text (URL, message) or a header mapping."""
    if isinstance(value, str):
        return _redact_text(value, secrets)
    return {name: _redact_header(name, text, secrets) for name, text in value.items()}


def _redact_text(text: str, secrets: SecretResolver | None) -> str:
    if secrets is not None:
        text = secrets.scrub(text)
    # Each pattern needs its one character: most texts (a short response body, an error
    # message) have neither, and are not searched at all.
    if "@" in text:
        text = _USERINFO.sub(rf"\g<head>:{REDACTED}@", text)
    if "=" in text:
        text = _PARAM.sub(rf"\g<head>{REDACTED}", text)
    return text


def _redact_header(name: str, value: str, secrets: SecretResolver | None) -> str:
    if name.lower() in SENSITIVE_HEADERS:
        return REDACTED
    return _redact_text(value, secrets)
