"""The systemd unit `pipeline-api.service`: its contract read as text, then checked by
`systemd-analyze verify` where the tool is installed (`make test` installs it as root)."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "pipeline-api.service"
INSTALLED_EXECUTABLE = "/opt/cronmgr/.venv/bin/cronmgr"

Sections = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Sections:
    """Section -> key -> every value assigned, in order (systemd keys may repeat)."""
    sections: Sections = {}
    current: dict[str, list[str]] = {}
    for line in _logical_lines(text):
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        else:
            key, _, value = line.partition("=")
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _logical_lines(text: str) -> Iterator[str]:
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""


@pytest.fixture(scope="module")
def unit() -> Sections:
    return parse_unit(UNIT.read_text())


def last(section: dict[str, list[str]], key: str) -> str | None:
    """The effective value of a single-valued key: the last assignment wins."""
    values = section.get(key)
    return values[-1] if values else None


# --- The contract, read as text (no systemd needed) -------------------------------------


def test_controller_reports_readiness_itself(unit: Sections) -> None:
    """Type=notify: `systemctl start` returns once `cronmgr serve` listens; only the
    controller may send READY=1, not the daemon or a step inheriting NOTIFY_SOCKET."""
    assert last(unit["Service"], "Type") == "notify"
    assert last(unit["Service"], "NotifyAccess") == "main"


def test_runs_cronmgr_serve_from_the_install_venv(unit: Sections) -> None:
    exec_start = last(unit["Service"], "ExecStart") or ""
    assert exec_start.endswith("cronmgr serve")
    # The verify test below swaps exactly this path for one that exists here.
    assert exec_start == f"{INSTALLED_EXECUTABLE} serve"


def test_controller_is_restarted_after_a_crash(unit: Sections) -> None:
    assert last(unit["Service"], "Restart") == "on-failure"


def test_stop_and_restart_signal_only_the_controller(unit: Sections) -> None:
    """KillMode=process: the detached daemon shares the unit's cgroup and must survive a
    controller stop, restart or crash; the next controller re-attaches via the PID file."""
    assert last(unit["Service"], "KillMode") == "process"


def test_runs_as_a_dedicated_static_user(unit: Sections) -> None:
    """A static user: a DynamicUser UID is released at unit stop while the daemon lives on."""
    service = unit["Service"]
    assert last(service, "User") == "cronmgr"
    assert last(service, "Group") == "cronmgr"
    assert last(service, "DynamicUser") in (None, "no")


def test_is_hardened(unit: Sections) -> None:
    service = unit["Service"]
    assert last(service, "NoNewPrivileges") == "yes"
    assert last(service, "ProtectSystem") == "strict"
    assert last(service, "ProtectHome") == "yes"


def test_state_and_logs_are_the_only_writable_persistent_paths(unit: Sections) -> None:
    """StateDirectory=/LogsDirectory= are writable under ProtectSystem=strict and must be
    the very directories the environment points cronmgr at."""
    service = unit["Service"]
    env = dict(item.partition("=")[::2] for item in service["Environment"])
    assert last(service, "StateDirectory") == "cronmgr"
    assert env["CRONMGR_HOME"] == "/var/lib/cronmgr"
    assert last(service, "LogsDirectory") == "cronmgr"
    assert env["CRONMGR_LOG_DIR"] == "/var/log/cronmgr"


def test_tmp_outlives_a_controller_restart(unit: Sections) -> None:
    """No PrivateTmp=: systemd deletes a unit's private /tmp when the unit stops, from
    under the surviving daemon; a tmpfs in the unit's namespace lives as long as it does."""
    service = unit["Service"]
    assert last(service, "PrivateTmp") in (None, "no")
    mounts = " ".join(service["TemporaryFileSystem"]).split()
    assert {m.partition(":")[0] for m in mounts} == {"/tmp", "/var/tmp"}


def test_is_enabled_for_the_normal_boot_target(unit: Sections) -> None:
    assert last(unit["Install"], "WantedBy") == "multi-user.target"


# --- systemd-analyze verify ----------------------------------------------------------------


@pytest.fixture(scope="module")
def analyze(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The verify command line, or a skip when this machine cannot verify units."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip(
            "systemd-analyze is not installed (Debian/Ubuntu: `apt-get install "
            "--no-install-recommends systemd`; `make test` tries that when run as root)"
        )
    command = [tool, "verify", "--man=no"]
    if "--recursive-errors" in _run([tool, "--help"]).stdout:
        # systemd >= 250: the exit status then reflects only the unit under test, not
        # warnings about system units it pulls in (network-online.target, ...).
        command.append("--recursive-errors=no")
    probe = tmp_path_factory.mktemp("probe") / "cronmgr-verify-probe.service"
    probe.write_text(f"[Service]\nExecStart={sys.executable} -c pass\n")
    result = _run([*command, str(probe)])
    if result.returncode != 0:
        pytest.skip(f"systemd-analyze cannot verify a trivial unit here: {result.stdout}")
    return command


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": "cat"}
    return subprocess.run(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def local_copy(directory: Path, text: str) -> Path:
    """The unit with the install-only parts (venv executable, cronmgr user) swapped for
    ones this machine has, because verify checks them; every other line is unchanged."""
    script = Path(sys.executable).with_name("cronmgr")
    executable = str(script) if script.exists() else f"{sys.executable} -m cronmgr"
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    if user == "nobody":  # verify warns that "nobody" is not safe; root always exists
        user, group = "root", "root"
    lines = []
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            line = line.replace(INSTALLED_EXECUTABLE, executable, 1)
        elif line.startswith("User="):
            line = f"User={user}"
        elif line.startswith("Group="):
            line = f"Group={group}"
        lines.append(line)
    path = directory / UNIT.name
    path.write_text("\n".join(lines) + "\n")
    return path


def findings_about(path: Path, output: str) -> list[str]:
    """Lines of verify output about our unit; those about other system units are noise."""
    return [line for line in output.splitlines() if path.name in line]


def test_systemd_analyze_verify_accepts_the_unit(analyze: list[str], tmp_path: Path) -> None:
    """No unknown keys, unparsable values or missing dependencies in the unit."""
    path = local_copy(tmp_path, UNIT.read_text())
    result = _run([*analyze, str(path)])
    assert findings_about(path, result.stdout) == []
    assert result.returncode == 0, result.stdout


def test_verify_would_catch_a_broken_unit(analyze: list[str], tmp_path: Path) -> None:
    """The check above is not vacuous: a misspelt key and a bad KillMode are reported."""
    text = UNIT.read_text().replace("KillMode=process", "KillMode=proces\nNoNewPrivilege=yes")
    path = local_copy(tmp_path, text)
    findings = findings_about(path, _run([*analyze, str(path)]).stdout)
    assert any("proces" in line for line in findings), findings
    assert any("NoNewPrivilege" in line for line in findings), findings
