"""Settings: the documented defaults, the TOML file, the environment winning, clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cronmgr.core.config import load_settings
from cronmgr.core.errors import ConfigError

MIB = 1024 * 1024


def write_config(tmp_path: Path, text: str) -> Path:
    """A TOML config file holding `text`."""
    path = tmp_path / "cronmgr.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_documented_ones(tmp_path: Path) -> None:
    """No file, no environment: grace 10 s, supervision on, interval 120, 10 MiB x 5 logs."""
    settings = load_settings(env={}, home=tmp_path)
    assert settings.stop_grace_seconds == 10.0
    assert settings.supervise is True
    assert settings.default_interval_seconds == 120
    assert settings.default_pipeline == "default"
    assert (settings.log_max_bytes, settings.log_backup_count) == (10 * MIB, 5)
    assert (settings.host, settings.port, settings.auth) == ("127.0.0.1", 8000, True)
    assert (settings.logs_default_lines, settings.logs_max_lines) == (10_000, 100_000)
    assert settings.cascade_deletes is False  # a used target's DELETE answers 409


def test_paths_default_under_home(tmp_path: Path) -> None:
    settings = load_settings(env={}, home=tmp_path)
    assert settings.log_file == tmp_path / "logs" / "cronmgr.log"
    assert settings.pid_file.parent == tmp_path / "var"
    assert settings.store_url == f"sqlite:///{tmp_path / 'var' / 'cronmgr.db'}"


def test_the_config_file_overrides_the_defaults(tmp_path: Path) -> None:
    config = write_config(tmp_path, "stop_grace_seconds = 30\nsupervise = false\nport = 8080\n")
    settings = load_settings(config, env={}, home=tmp_path)
    assert settings.stop_grace_seconds == 30.0
    assert settings.supervise is False
    assert settings.port == 8080


def test_the_environment_wins_over_the_config_file(tmp_path: Path) -> None:
    """A key set in both: the CRONMGR_* variable wins; keys only in the file still apply."""
    config = write_config(tmp_path, "stop_grace_seconds = 30\nport = 8080\nlog_backup_count = 2\n")
    env = {"CRONMGR_STOP_GRACE_SECONDS": "7.5", "CRONMGR_PORT": "9090"}
    settings = load_settings(config, env=env, home=tmp_path)
    assert settings.stop_grace_seconds == 7.5
    assert settings.port == 9090
    assert settings.log_backup_count == 2


def test_cascade_deletes_comes_from_the_file_and_the_environment(tmp_path: Path) -> None:
    """`cascade_deletes = true` in the file; CRONMGR_CASCADE_DELETES wins; a non-boolean is
    refused naming the setting."""
    config = write_config(tmp_path, "cascade_deletes = true\n")
    assert load_settings(config, env={}, home=tmp_path).cascade_deletes is True
    env = {"CRONMGR_CASCADE_DELETES": "false"}
    assert load_settings(config, env=env, home=tmp_path).cascade_deletes is False
    assert load_settings(env={"CRONMGR_CASCADE_DELETES": "1"}, home=tmp_path).cascade_deletes
    with pytest.raises(ConfigError, match="cascade_deletes"):
        load_settings(env={"CRONMGR_CASCADE_DELETES": "sometimes"}, home=tmp_path)


def test_cronmgr_config_names_the_file_when_no_argument_does(tmp_path: Path) -> None:
    config = write_config(tmp_path, "default_interval_seconds = 300\n")
    env = {"CRONMGR_CONFIG": str(config), "CRONMGR_SUPERVISE": "false"}
    settings = load_settings(env=env, home=tmp_path)
    assert settings.default_interval_seconds == 300
    assert settings.supervise is False


def test_an_empty_variable_leaves_the_setting_alone(tmp_path: Path) -> None:
    config = write_config(tmp_path, "port = 8080\n")
    assert load_settings(config, env={"CRONMGR_PORT": ""}, home=tmp_path).port == 8080


def test_a_bad_value_in_the_environment_is_a_config_error_naming_the_field(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"CRONMGR_STOP_GRACE_SECONDS": "soon"}, home=tmp_path)
    assert caught.value.detail.startswith("invalid configuration")
    assert "stop_grace_seconds" in caught.value.detail


def test_a_bad_value_in_the_file_names_the_field_and_the_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, "default_interval_seconds = 5\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={}, home=tmp_path)
    detail = caught.value.detail
    assert "default_interval_seconds" in detail and "greater than or equal to 10" in detail
    assert str(config) in detail


def test_an_unknown_key_in_the_file_is_rejected(tmp_path: Path) -> None:
    config = write_config(tmp_path, "stop_grace = 3\n")
    with pytest.raises(ConfigError, match="stop_grace"):
        load_settings(config, env={}, home=tmp_path)


def test_a_file_that_is_not_toml_is_a_config_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, "port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config, env={}, home=tmp_path)


def test_a_missing_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        load_settings(tmp_path / "missing.toml", env={}, home=tmp_path)


WEBHOOKS_TOML = """
[[webhooks]]
name = "ops"
url = "https://hooks.example/cronmgr"
secret = "${env:HOOK_SECRET}"
events = ["incident_opened", "daemon_died"]
timeout_seconds = 5
max_attempts = 2

[[webhooks]]
url = "https://hooks.slack.com/services/${env:SLACK_PATH}"
format = "slack"
secret = "literal-secret-value"
"""


def test_webhooks_come_from_the_file_with_their_defaults(tmp_path: Path) -> None:
    """[[webhooks]] tables: fields as given, the rest defaulted (json, every event)."""
    settings = load_settings(write_config(tmp_path, WEBHOOKS_TOML), env={}, home=tmp_path)
    ops, slack = settings.webhooks
    assert (ops.name, ops.format, ops.timeout_seconds, ops.max_attempts) == ("ops", "json", 5, 2)
    assert ops.events == ("incident_opened", "daemon_died")
    assert ops.wants("daemon_died") and not ops.wants("schedule_disabled")
    assert slack.format == "slack" and slack.events is None and slack.wants("schedule_disabled")
    assert slack.max_attempts == 4 and slack.timeout_seconds == 10.0
    assert settings.notify_queue_size == 1000


def test_webhook_secrets_never_show_in_the_settings(tmp_path: Path) -> None:
    """repr, str and a plain dump of the settings mask the secret."""
    settings = load_settings(write_config(tmp_path, WEBHOOKS_TOML), env={}, home=tmp_path)
    shown = f"{settings!r} {settings} {settings.model_dump()} {settings.model_dump_json()}"
    assert "literal-secret-value" not in shown


def test_webhooks_reach_the_daemon_through_the_environment_but_not_its_steps(
    tmp_path: Path,
) -> None:
    """The daemon reads them from CRONMGR_WEBHOOKS (secrets intact); the settings
    variables that steps inherit leave them out."""
    from cronmgr.controller.launcher import settings_env
    from cronmgr.core.config import WEBHOOKS_ENV, webhooks_env

    settings = load_settings(write_config(tmp_path, WEBHOOKS_TOML), env={}, home=tmp_path)
    assert WEBHOOKS_ENV not in settings_env(settings)
    daemon = load_settings(env=webhooks_env(settings), home=tmp_path)
    assert daemon.webhooks == settings.webhooks
    secret = daemon.webhooks[1].secret
    assert secret is not None and secret.get_secret_value() == "literal-secret-value"
    assert webhooks_env(load_settings(env={}, home=tmp_path)) == {}


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('url = "ftp://hooks.example/x"', "webhooks.0.url: scheme must be http or https"),
        ('url = "https:///x"', "webhooks.0.url: must name a host"),
        ('url = "https://h/x"\nevents = ["incident_opened", "typo"]', "webhooks.0.events.1"),
        ('url = "https://h/x"\nevents = []', "webhooks.0.events: Value error, list at least"),
        ('url = "https://h/x"\nformat = "xml"', "webhooks.0.format"),
        ('url = "https://h/x"\nmax_attempts = 0', "webhooks.0.max_attempts"),
        ('url = "https://h/x"\nretries = 3', "webhooks.0.retries: Extra inputs"),
        ('name = "no url"', "webhooks.0.url: Field required"),
    ],
)
def test_a_bad_webhook_is_a_config_error_naming_the_field(
    tmp_path: Path, table: str, named: str
) -> None:
    config = write_config(tmp_path, f"[[webhooks]]\n{table}\n")
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_settings(config, env={}, home=tmp_path)


def test_webhook_names_are_unique(tmp_path: Path) -> None:
    table = '[[webhooks]]\nname = "a"\nurl = "https://h/{}"\n'
    text = table.format(1) + table.format(2)
    with pytest.raises(ConfigError, match=r"webhooks: .*names must be unique; a used more"):
        load_settings(write_config(tmp_path, text), env={}, home=tmp_path)


def test_webhooks_in_the_environment_must_be_json(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CRONMGR_WEBHOOKS is not valid JSON"):
        load_settings(env={"CRONMGR_WEBHOOKS": "[{url"}, home=tmp_path)
