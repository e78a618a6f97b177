"""Where this machine's controller listens and keeps its token, without the full settings.

`Settings` (in `cronmgr.core.config`) validates every setting with pydantic; the Python client
only needs five of them (`home`, `state_dir`, `host`, `port`, `api_token`) to find the
controller and its token. This module holds the rules both use: where the state
directory and token file are, which URL reaches the controller, and how the TOML file and
the `CRONMGR_*` variables are read. It imports nothing but the standard library and
`cronmgr.core.errors`, so `import cronmgr.client` stays light.

`load_location()` reads the same sources as `load_settings()` (the file named by
`CRONMGR_CONFIG`, then the environment, which wins) and checks the five values the way
`Settings` does; settings the client does not use are left to the controller to check.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cronmgr.core.errors import ConfigError

ENV_PREFIX = "CRONMGR_"
TOKEN_FILENAME = "api-token"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
MIN_TOKEN_LENGTH = 16
MAX_PORT = 65535
_FIELDS = ("home", "state_dir", "host", "port", "api_token")


class Located(Protocol):
    """What a client needs to know of the controller: `Settings` and `Location` both."""

    @property
    def api_token(self) -> str | None:
        """The configured bearer token, if any."""

    @property
    def token_file(self) -> Path:
        """Where the controller keeps the token it generated."""

    @property
    def base_url(self) -> str:
        """The controller's URL as a client on this machine reaches it."""


@dataclass(frozen=True)
class Location:
    """The five settings a client reads, with the paths and URL derived from them."""

    home: Path
    state_dir: Path | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    api_token: str | None = None

    @property
    def token_file(self) -> Path:
        """Where the generated API token lives."""
        return token_file(state_path(self.home, self.state_dir))

    @property
    def base_url(self) -> str:
        """The controller's own URL, as a client on this machine reaches it."""
        return controller_url(self.host, self.port)


def state_path(home: Path, state_dir: Path | None) -> Path:
    """Directory of the PID file, the token file and the SQLite store."""
    return state_dir or home / "var"


def token_file(state: Path) -> Path:
    """The token file inside the state directory `state`."""
    return state / TOKEN_FILENAME


def controller_url(host: str, port: int) -> str:
    """The URL of a controller listening on `host`:`port`, seen from this machine."""
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def absolute(path: Path) -> Path:
    """`path` with `~` expanded, made absolute (the daemon changes its working directory)."""
    return path.expanduser().absolute()


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(located: Located) -> str | None:
    """The token a local client should send: configured, or read from the token file."""
    if located.api_token:
        return located.api_token
    try:
        token = located.token_file.read_text().strip()
    except (FileNotFoundError, PermissionError):
        return None
    return token or None


def read_toml(path: Path) -> dict[str, Any]:
    """The settings file's tables; ConfigError when it cannot be read or parsed."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def named_config(env: Mapping[str, str]) -> str | None:
    """The settings file `CRONMGR_CONFIG` names, if any."""
    return env.get(f"{ENV_PREFIX}CONFIG") or None


def from_env(env: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """The non-empty `CRONMGR_<NAME>` variables of `names`, keyed by name."""
    found = {name: env.get(ENV_PREFIX + name.upper()) for name in names}
    return {name: value for name, value in found.items() if value is not None and value != ""}


def load_location(env: Mapping[str, str] | None = None) -> Location:
    """The client's five settings from the TOML file and the environment, as `Settings`."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    file = named_config(env)
    if file:
        values.update({k: v for k, v in read_toml(Path(file)).items() if k in _FIELDS})
    values.update(from_env(env, _FIELDS))
    try:
        return _located(values)
    except ValueError as exc:
        where = f" (config file {file} or CRONMGR_* environment)" if file else ""
        raise ConfigError(f"invalid configuration{where}: {exc}") from exc


def _located(values: Mapping[str, Any]) -> Location:
    state_dir = values.get("state_dir")
    return Location(
        home=absolute(_path("home", values.get("home", Path.cwd()))),
        state_dir=absolute(_path("state_dir", state_dir)) if state_dir is not None else None,
        host=_text("host", values.get("host", DEFAULT_HOST)),
        port=_port(values.get("port", DEFAULT_PORT)),
        api_token=_token(values.get("api_token")),
    )


def _path(name: str, value: object) -> Path:
    if not isinstance(value, str | Path):
        raise ValueError(f"{name}: Input is not a valid path")
    return Path(value)


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name}: Input should be a valid string")
    return value


def _port(value: object) -> int:
    # As pydantic's lax mode: an int, or a string of one; not a bool.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("port: Input should be a valid integer")
    try:
        port = int(value)
    except ValueError:
        raise ValueError("port: Input should be a valid integer") from None
    if not 0 <= port <= MAX_PORT:
        raise ValueError(f"port: Input should be an integer from 0 to {MAX_PORT}")
    return port


def _token(value: object) -> str | None:
    if value is None:
        return None
    token = _text("api_token", value)
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"api_token: String should have at least {MIN_TOKEN_LENGTH} characters")
    return token
