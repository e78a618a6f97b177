"""The Python client is light: importing it loads no validation or templating library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cronmgr.core.config import load_settings
from cronmgr.core.errors import ConfigError
from cronmgr.core.locate import load_location, read_token

# requests too: the seed client loads it only to raise its first error (cronmgr.client.seed).
HEAVY = ("pydantic", "jinja2", "croniter", "requests")

IMPORTS = {
    "module": "import cronmgr.client",
    "package": "from cronmgr import Client, AsyncClient",
}


@pytest.mark.parametrize("statement", IMPORTS.values(), ids=IMPORTS.keys())
def test_importing_the_client_loads_no_heavy_library(statement: str) -> None:
    """A fresh interpreter that imports the client has none of pydantic, jinja2, croniter."""
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = {name.partition(".")[0] for name in json.loads(done.stdout)}
    assert loaded.isdisjoint(HEAVY), sorted(loaded.intersection(HEAVY))


def _environment(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "cronmgr.toml"
    config.write_text(f'home = "{tmp_path / "home"}"\nport = 8123\nlog_level = "debug"\n')
    return {
        "CRONMGR_CONFIG": str(config),
        "CRONMGR_STATE_DIR": str(tmp_path / "state"),
        "CRONMGR_HOST": "::1",
    }


def test_the_client_finds_the_controller_where_the_settings_put_it(tmp_path: Path) -> None:
    """File and environment give the client the URL and token file `Settings` gives."""
    env = _environment(tmp_path)
    settings, location = load_settings(env=env), load_location(env)
    assert location.base_url == settings.base_url == "http://[::1]:8123"
    assert location.token_file == settings.token_file == tmp_path / "state" / "api-token"
    settings.token_file.parent.mkdir()
    settings.token_file.write_text("a-generated-token-of-some-length\n")
    assert read_token(location) == read_token(settings) == "a-generated-token-of-some-length"
    assert read_token(load_location({**env, "CRONMGR_API_TOKEN": "x" * 16})) == "x" * 16


@pytest.mark.parametrize(
    ("name", "value"), [("PORT", "eighty"), ("PORT", "70000"), ("API_TOKEN", "short")]
)
def test_a_bad_client_setting_is_a_config_error_as_in_settings(
    tmp_path: Path, name: str, value: str
) -> None:
    """A value the client reads that `Settings` rejects is rejected with the same class."""
    env = {**_environment(tmp_path), f"CRONMGR_{name}": value}
    with pytest.raises(ConfigError):
        load_settings(env=env)
    with pytest.raises(ConfigError, match=name.lower()):
        load_location(env)
