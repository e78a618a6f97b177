"""A non-editable install carries its templates and the demo pipeline inside the package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel and install it (without dependencies) into a target directory."""
    root = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "-w", str(root / "dist"), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (root / "dist").glob("cronmgr-*.whl")
    target = root / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return target


def run_installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m cronmgr ARGS` importing cronmgr from the installed copy only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRONMGR_")}
    env["PYTHONPATH"] = str(site)
    return subprocess.run(
        [sys.executable, "-P", "-m", "cronmgr", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_wheel_ships_templates_pipelines_and_queries(installed: Path) -> None:
    """Templates, the demo pipeline with its script, SQL and py.typed are in the package."""
    package = installed / "cronmgr"
    for relative in (
        "templates/index.html",
        "defaults/default.toml",
        "defaults/scripts/demo_step.py",
        "sql/sqlite.sql",
        "py.typed",
    ):
        assert (package / relative).is_file(), relative


def test_installed_package_validates_its_own_demo_pipeline(installed: Path, tmp_path: Path) -> None:
    """With an empty home, the installed cronmgr finds the bundled demo pipeline."""
    env = {**os.environ, "PYTHONPATH": str(installed)}
    where = subprocess.run(
        [sys.executable, "-P", "-c", "import cronmgr; print(cronmgr.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(installed)), "the installed copy must be the one tested"
    result = run_installed(installed, tmp_path, "--home", str(tmp_path), "validate")
    assert result.returncode == 0, result.stderr
    assert "default" in result.stdout and "extract" in result.stdout
