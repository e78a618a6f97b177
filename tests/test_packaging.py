"""A non-editable install works on its own: templates and the demo pipeline ship inside the
package, and the installed `cronmgr serve` answers /health and /docs.

The wheel is built once per module and installed, with its dependencies, into a fresh
virtual environment, so a dependency missing from setup.cfg fails here too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port, wait_for

REPO = Path(__file__).resolve().parent.parent
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
# Straight to 127.0.0.1, whatever proxy the environment configures.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel (no dependencies)."""
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [*PIP, "wheel", "--no-deps", "-w", str(dist), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = dist.glob("cronmgr-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A fresh virtual environment with the wheel and its dependencies installed."""
    root = tmp_path_factory.mktemp("venv") / "env"
    # Without its own pip (the slow part of creating one): this pip installs into it.
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120
    )
    result = subprocess.run(
        [*PIP, "--python", str(root / "bin" / "python"), "install", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return root


def installed_env() -> dict[str, str]:
    """This environment without CRONMGR_* settings or a PYTHONPATH leading elsewhere."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith("CRONMGR_") and k != "PYTHONPATH"
    }


def run_installed(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed `cronmgr ARGS` console script, to completion."""
    return subprocess.run(
        [str(venv / "bin" / "cronmgr"), *args],
        cwd=cwd,
        env=installed_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def site_packages(venv: Path) -> Path:
    """The environment's site-packages directory."""
    (found,) = venv.glob("lib/python3*/site-packages")
    return found


def test_wheel_ships_every_template(wheel: Path) -> None:
    """Every file of templates/ (docs.html, index.html, ...) is cronmgr/templates/* in the wheel."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    templates = [p.relative_to(REPO) for p in (REPO / "templates").rglob("*") if p.is_file()]
    assert {Path("templates/docs.html"), Path("templates/index.html")} <= set(templates)
    missing = [str(t) for t in templates if f"cronmgr/{t.as_posix()}" not in names]
    assert not missing, f"not in the wheel: {missing}"


def test_wheel_ships_templates_pipelines_and_queries(venv: Path) -> None:
    """Templates, the demo pipeline with its script, SQL and py.typed are in the package."""
    package = site_packages(venv) / "cronmgr"
    for relative in (
        "templates/index.html",
        "templates/docs.html",
        "defaults/default.toml",
        "defaults/scripts/demo_step.py",
        "sql/sqlite.sql",
        "py.typed",
    ):
        assert (package / relative).is_file(), relative


def test_installed_package_validates_its_own_demo_pipeline(venv: Path, tmp_path: Path) -> None:
    """With an empty home, the installed cronmgr finds the bundled demo pipeline."""
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import cronmgr; print(cronmgr.__file__)"],
        cwd=tmp_path,
        env=installed_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(venv)), "the installed copy must be the one tested"
    result = run_installed(venv, tmp_path, "--home", str(tmp_path), "validate")
    assert result.returncode == 0, result.stderr
    assert "default" in result.stdout and "extract" in result.stdout


@pytest.fixture
def installed_controller(venv: Path, tmp_path: Path) -> Iterator[str]:
    """The installed `cronmgr serve` on a free port with a temporary home; its URL."""
    port = free_port()
    env = {**installed_env(), "CRONMGR_HOME": str(tmp_path), "CRONMGR_PORT": str(port)}
    process = subprocess.Popen(
        [str(venv / "bin" / "cronmgr"), "serve"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(url, process), what="the installed controller to listen")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()


def answers(url: str, process: subprocess.Popen[bytes]) -> bool:
    """Whether /health answers; fails at once if the controller exited."""
    if process.poll() is not None:
        err = process.stderr.read().decode() if process.stderr else ""
        pytest.fail(f"the installed controller exited with {process.returncode}: {err}")
    try:
        with OPENER.open(url + "/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_installed_controller_serves_health_and_docs(installed_controller: str) -> None:
    """The installed copy renders /docs from its bundled templates, with no source tree."""
    with OPENER.open(installed_controller + "/health", timeout=10) as response:
        assert b'"healthy"' in response.read()
    with OPENER.open(installed_controller + "/docs", timeout=10) as response:
        assert response.status == 200
        assert response.headers.get_content_type() == "text/html"
        page = response.read().decode()
    assert "/api/cron/start" in page and "/api/v1/schedules" in page
