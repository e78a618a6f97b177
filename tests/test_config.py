"""Settings: the documented defaults, the TOML file, the environment winning, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from cronmgr.config import load_settings
from cronmgr.errors import ConfigError

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
