"""Settings: one object built from an optional TOML file and `CRONMGR_*` variables.

Every setting has a TOML key and an environment variable named `CRONMGR_<KEY>`; the
environment wins over the file, the file over the defaults. Paths left unset are placed
under `home`. Nothing here runs at import time: callers build a `Settings` with
`load_settings()` at their entry point and pass it down.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from cronmgr.core.errors import ConfigError
from cronmgr.core.locate import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    MAX_PORT,
    MIN_TOKEN_LENGTH,
    absolute,
    controller_url,
    from_env,
    is_loopback,
    named_config,
    read_toml,
    state_path,
    token_file,
)
from cronmgr.core.locate import (
    ENV_PREFIX as ENV_PREFIX,
)
from cronmgr.core.specs.fields import check_http_url

PID_FILENAME = "cronmgr.pid"
LOG_FILENAME = "cronmgr.log"


#: What a notification can be about; `events = [...]` of a webhook picks among them.
EVENT_KINDS = ("incident_opened", "incident_resolved", "schedule_disabled", "daemon_died")
EventKind = Literal["incident_opened", "incident_resolved", "schedule_disabled", "daemon_died"]
WEBHOOKS_ENV = ENV_PREFIX + "WEBHOOKS"
"""How the controller hands the webhooks to the daemon it launches (JSON)."""
STORE_URL_ENV = ENV_PREFIX + "STORE_URL"
"""The store URL under the name the cluster documents (CRONMGR_DATABASE_URL works too)."""
STORE_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")


class WebhookConfig(BaseModel):
    """One `[[webhooks]]` table: where notifications go, signed how, filtered to what."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(description="http(s) URL; `${env:NAME}` references resolve at send time.")
    name: str | None = Field(None, min_length=1, description="Picks it in the test endpoint.")
    secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key of X-Cronmgr-Signature; may be `${env:NAME}`."
    )
    format: Literal["json", "slack"] = Field("json", description="Envelope or Slack text.")
    events: tuple[EventKind, ...] | None = Field(
        None, description="Event kinds sent here; default every kind."
    )
    timeout_seconds: float = Field(10.0, gt=0, le=300, description="Per attempt.")
    max_attempts: int = Field(4, ge=1, le=20, description="Tries of one event, the first included.")
    backoff_seconds: float = Field(1.0, ge=0, le=600, description="First retry delay (doubles).")
    backoff_max_seconds: float = Field(60.0, ge=0, le=3600, description="Longest retry delay.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value)

    @field_validator("events")
    @classmethod
    def _some_events(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and not value:
            raise ValueError("list at least one event kind, or leave events out for all")
        return value

    def wants(self, kind: str) -> bool:
        """Whether events of `kind` go to this webhook."""
        return self.events is None or kind in self.events

    def revealed(self) -> dict[str, Any]:
        """The table as JSON-ready values, the secret included (for the daemon's launch)."""
        data = self.model_dump(mode="json")
        data["secret"] = self.secret.get_secret_value() if self.secret is not None else None
        return data


class Settings(BaseModel):
    """Everything configurable about the controller and the daemon."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    home: Path = Field(default_factory=Path.cwd, description="Base directory.")
    pipelines_dir: Path | None = Field(None, description="Pipeline files; default home/pipelines.")
    log_dir: Path | None = Field(None, description="Log directory; default home/logs.")
    state_dir: Path | None = Field(None, description="PID file, token, store; default home/var.")
    host: str = Field(DEFAULT_HOST, description="Address the controller listens on.")
    port: int = Field(
        DEFAULT_PORT, ge=0, le=MAX_PORT, description="Port the controller listens on."
    )
    database_url: str | None = Field(
        None,
        description="Store URL (also `store_url`): sqlite:///<path>, default the state_dir's "
        "cronmgr.db, or postgresql://<user>@<host>:<port>/<db> shared by several daemons.",
        max_length=4096,
    )
    node_id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        description="This daemon's id among the nodes of its store; default the host name "
        "and a hash of the state_dir (the same across restarts).",
    )
    lease_seconds: float = Field(
        10.0,
        ge=1,
        le=3600,
        description="How long a node's lease lasts unrenewed (renewed every third of it): "
        "a dead node's schedules move to the others within it (taken over a twentieth early).",
    )
    api_token: str | None = Field(
        None, min_length=MIN_TOKEN_LENGTH, description="Bearer token for the API."
    )
    auth: bool = Field(True, description="Require the bearer token (loopback only when off).")
    lockout_failures: int = Field(
        20,
        ge=0,
        le=1_000_000,
        description="Wrong tokens one address may send within a minute before it gets 429 "
        "(0: no lockout, for a fuzzer or a trusted network).",
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, le=1024**3, description="Largest request body."
    )
    request_head_timeout_seconds: float = Field(
        30.0,
        ge=0.1,
        le=3600,
        description="A connection without a whole request head this long after it opened or"
        " after its last answer is closed (slow headers; idle keep-alive).",
    )
    log_level: str = Field("info", pattern="^(debug|info|warning|error)$")
    log_max_bytes: int = Field(
        10 * 1024 * 1024, ge=4096, le=1024**4, description="Rotate the log above."
    )
    log_backup_count: int = Field(5, ge=0, le=100, description="Rotated log files kept.")
    logs_default_lines: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="The cap of `GET /api/cron/logs` without `lines`: the whole log up to this"
        " many lines, else its last lines and `truncated: true`.",
    )
    logs_max_lines: int = Field(
        100_000, ge=1, le=10_000_000, description="Most lines one request returns."
    )
    cascade_deletes: bool = Field(
        False,
        description="`DELETE /api/v1/targets/{id}` without `cascade` deletes the target's"
        " schedules too (their runs stay), as the API Scheduler did; false: 409 while used.",
    )
    default_pipeline: str = Field("default", description="Pipeline `start` runs.")
    default_interval_seconds: int = Field(
        120, ge=10, le=315_576_000, description="Interval `start` uses."
    )
    start_timeout_seconds: float = Field(
        15.0, gt=0, le=3600, description="Wait for daemon readiness."
    )
    stop_grace_seconds: float = Field(
        10.0, ge=0, le=86400, description="In-flight work grace on stop."
    )
    max_concurrent_pipeline_runs: int = Field(
        8, ge=1, le=1000, description="Pipeline runs executing at once; more wait in line."
    )
    step_kill_grace_seconds: float = Field(
        5.0, ge=0, le=3600, description="SIGTERM to SIGKILL for steps."
    )
    supervise: bool = Field(True, description="Restart the daemon when it dies unexpectedly.")
    restart_backoff_seconds: float = Field(1.0, gt=0, le=3600, description="First restart delay.")
    restart_backoff_max_seconds: float = Field(
        60.0, gt=0, le=86400, description="Longest restart delay."
    )
    restart_min_uptime_seconds: float = Field(
        30.0, ge=0, le=86400, description="Shorter life is quick."
    )
    restart_max_quick_failures: int = Field(
        5, ge=1, le=1000, description="Quick deaths before fatal."
    )
    supervise_poll_seconds: float = Field(1.0, gt=0, le=3600, description="Liveness check period.")
    retention_runs_per_schedule: int | None = Field(
        10_000, ge=1, le=1_000_000_000, description="Finished runs kept per schedule (None: all)."
    )
    retention_days: float | None = Field(
        90.0, gt=0, le=36500, description="Finished runs kept this long."
    )
    retention_interval_seconds: float = Field(600.0, gt=0, le=604800, description="Purge period.")
    incident_threshold: int = Field(
        3,
        ge=1,
        le=1_000_000,
        description="Failed runs in a row of a target or pipeline that open an incident.",
    )
    webhooks: tuple[WebhookConfig, ...] = Field((), description="Notification webhooks.")
    notify_queue_size: int = Field(
        1000, ge=1, le=1_000_000, description="Events waiting per webhook; beyond, oldest dropped."
    )

    @model_validator(mode="before")
    @classmethod
    def _store_url_alias(cls, values: Any) -> Any:
        # `store_url` is the name the cluster documents; `database_url` the first one.
        if not isinstance(values, dict) or "store_url" not in values:
            return values
        values = dict(values)
        url = values.pop("store_url")
        if values.get("database_url") not in (None, url):
            raise ValueError("store_url and database_url name different stores: set one")
        values["database_url"] = url
        return values

    @field_validator("database_url")
    @classmethod
    def _known_store(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(STORE_SCHEMES):
            raise ValueError(
                "expected sqlite:///<path> or postgresql://<user>@<host>:<port>/<database>"
            )
        return value

    @field_validator("home", "pipelines_dir", "log_dir", "state_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        # The daemon changes its working directory; relative paths would move with it.
        return absolute(value) if value is not None else None

    @model_validator(mode="after")
    def _listen_safely(self) -> Settings:
        # A token that sits in a file next to the daemon is fine for loopback; anyone who
        # exposes the API beyond this machine must choose a token on purpose.
        if not is_loopback(self.host) and (not self.auth or not self.api_token):
            raise ValueError(
                f"refusing to listen on non-loopback address {self.host!r} without a "
                "configured API token: set CRONMGR_API_TOKEN (and keep auth on)"
            )
        return self

    @field_validator("webhooks")
    @classmethod
    def _unique_webhook_names(cls, value: tuple[WebhookConfig, ...]) -> tuple[WebhookConfig, ...]:
        names = [hook.name for hook in value if hook.name is not None]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"names must be unique; {', '.join(twice)} used more than once")
        return value

    @property
    def pipelines_path(self) -> Path:
        """Directory of pipeline TOML files: configured, home/pipelines, or the demo."""
        if self.pipelines_dir:
            return self.pipelines_dir
        in_home = self.home / "pipelines"
        return in_home if in_home.is_dir() else bundled_path("pipelines")

    @property
    def log_path(self) -> Path:
        """Directory of the daemon's log files."""
        return self.log_dir or self.home / "logs"

    @property
    def state_path(self) -> Path:
        """Directory of the PID file, the token file and the SQLite store."""
        return state_path(self.home, self.state_dir)

    @property
    def log_file(self) -> Path:
        """The daemon's JSON-lines log."""
        return self.log_path / LOG_FILENAME

    @property
    def pid_file(self) -> Path:
        """The daemon's PID file (pid and create time, flock held for its life)."""
        return self.state_path / PID_FILENAME

    @property
    def token_file(self) -> Path:
        """Where the generated API token lives (mode 0600)."""
        return token_file(self.state_path)

    @property
    def store_url(self) -> str:
        """The store to open: the configured URL or SQLite in the state directory."""
        return self.database_url or f"sqlite:///{self.state_path / 'cronmgr.db'}"

    @property
    def base_url(self) -> str:
        """The controller's own URL, as a client on this machine reaches it."""
        return controller_url(self.host, self.port)


def bundled_path(kind: str) -> Path:
    """A directory shipped with cronmgr (`pipelines` or `templates`).

    In an installed wheel they live inside the package (`cronmgr/defaults`,
    `cronmgr/templates`); in a source checkout, at the repository's top level.
    """
    package = Path(__file__).resolve().parent.parent  # cronmgr/, above core/
    inside = package / ("defaults" if kind == "pipelines" else kind)
    return inside if inside.is_dir() else package.parent / kind


def load_settings(
    config_file: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from defaults, the TOML file, the environment and overrides."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    config_file = config_file or named_config(env)
    if config_file:
        values.update(read_toml(Path(config_file)))
    values.update(_from_env(env))
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, config_file)) from exc


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = dict(from_env(env, Settings.model_fields))
    if STORE_URL_ENV in env:
        found["store_url"] = env[STORE_URL_ENV]
    if "webhooks" in found:
        found["webhooks"] = _webhooks_from_env(found["webhooks"])
    return found


def _webhooks_from_env(text: str) -> Any:
    # Webhooks are configured in the file; this variable is how the controller passes
    # them on to the daemon it launches, as JSON.
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{WEBHOOKS_ENV} is not valid JSON: {exc}") from exc


def webhooks_env(settings: Settings) -> dict[str, str]:
    """The webhooks as the variable the daemon reads them from (empty without any)."""
    if not settings.webhooks:
        return {}
    return {WEBHOOKS_ENV: json.dumps([hook.revealed() for hook in settings.webhooks])}


def _describe(exc: ValidationError, config_file: Path | str | None) -> str:
    where = f" (config file {config_file} or CRONMGR_* environment)" if config_file else ""
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        parts.append(f"{field}: {err['msg']}")
    return "invalid configuration" + where + ": " + "; ".join(parts)
