"""Fuzz a live controller and its running daemon from `/openapi.json` with schemathesis.

Run inside a network namespace of its own (`unshare -n`, see `run` below): targets the
fuzzer invents (`https://example.com/…`) and the schedules it makes for them then reach no
network at all, only the loopback the controller listens on. The harness starts a
controller with the wrong-token lockout switched off (the fuzzer sends bad tokens on
purpose and would lock itself out), starts the daemon, seeds one target and one schedule
so that the fuzzer's links have ids to follow, runs every schemathesis check, and then
checks what the fuzzer can't see: the daemon still runs and the controller logged no
unexpected exception.

    python tests/fuzz/harness.py --max-time 60      # in a namespace already
    python tests/fuzz/harness.py --netns --max-time 600
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CONFIG = HERE / "schemathesis.toml"


def main() -> int:
    """Parse the options, re-run in a namespace if asked, and fuzz."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--netns", action="store_true", help="run in a new network namespace")
    parser.add_argument("--max-time", type=int, default=60, help="seconds for schemathesis")
    parser.add_argument("--max-examples", type=int, default=10, help="per operation and phase")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    if args.netns:
        own = [a for a in sys.argv[1:] if a != "--netns"]
        return subprocess.call(["unshare", "--net", sys.executable, __file__, *own])
    subprocess.run(["ip", "link", "set", "lo", "up"], check=False)
    with tempfile.TemporaryDirectory(prefix="cronmgr-fuzz-") as root:
        return fuzz(Path(root), args)


def fuzz(root: Path, args: argparse.Namespace) -> int:
    """Start the controller and the daemon under `root`, fuzz them, report."""
    home = root / "home"
    shutil.copytree(REPO / "pipelines", home / "pipelines")
    port = _free_port()
    env = _env(home, port)
    log = (root / "controller.log").open("wb")
    controller = subprocess.Popen(
        [sys.executable, "-m", "cronmgr", "serve"],
        env=env,
        cwd=home,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, controller)
        token = (home / "var" / "api-token").read_text().strip()
        _seed(base, token)
        status = _schemathesis(base, token, args, cwd=root)
        problems = _aftermath(base, token, root / "controller.log")
    finally:
        _call(base, "POST", "/api/cron/stop", _token_of(home))
        controller.terminate()
        controller.wait(timeout=30)
        log.close()
    for problem in problems:
        print(f"fuzz: {problem}", file=sys.stderr)
    return status or (1 if problems else 0)


def _env(home: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRONMGR_")}
    env.update(
        CRONMGR_HOME=str(home),
        CRONMGR_PORT=str(port),
        CRONMGR_LOCKOUT_FAILURES="0",
        CRONMGR_SUPERVISE="false",
        CRONMGR_STOP_GRACE_SECONDS="2",
        CRONMGR_STEP_KILL_GRACE_SECONDS="1",
    )
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(base: str, controller: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if controller.poll() is not None:
            raise SystemExit(f"the controller exited with {controller.returncode}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the controller did not answer /health within 60 s")


def _token_of(home: Path) -> str:
    path = home / "var" / "api-token"
    return path.read_text().strip() if path.exists() else ""


def _call(base: str, method: str, path: str, token: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read() or b"null")
    except OSError as exc:
        return {"error": str(exc)}


def _seed(base: str, token: str) -> None:
    """A running daemon, a target and a schedule: ids for the fuzzer's links to follow."""
    _call(base, "POST", "/api/cron/start", token, {"interval_seconds": 60})
    target = _call(
        base,
        "POST",
        "/api/v1/targets",
        token,
        {"name": "seed", "url": f"{base}/health", "timeout_seconds": 5},
    )
    _call(
        base,
        "POST",
        "/api/v1/schedules",
        token,
        {
            "name": "seed",
            "target_id": target["id"],
            "schedule_type": "interval",
            "interval_seconds": 5,
        },
    )


def _schemathesis(base: str, token: str, args: argparse.Namespace, cwd: Path) -> int:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(CONFIG),
        "--no-color",
        "run",
        f"{base}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--max-examples",
        str(args.max_examples),
        "--max-time",
        str(args.max_time),
        "--request-timeout",
        "20",
        "--generation-database",
        "none",
        # The token is given; random ones in its place only test 401, which ignored_auth
        # already does on every operation.
        "--generation-with-security-parameters",
        "false",
        "--workers",
        "1",
    ]
    if args.seed is not None:
        command += ["--seed", str(args.seed)]
    # Run in the temporary root: schemathesis keeps its cache in the working directory.
    return subprocess.call(command, cwd=cwd)


def _aftermath(base: str, token: str, log: Path) -> list[str]:
    """What the fuzzer can't see: a dead daemon, an exception only the log has."""
    problems = []
    status = _call(base, "GET", "/api/cron/status", token)
    if not isinstance(status, dict) or "is_running" not in status:
        problems.append(f"status did not answer: {status}")
    failed = [
        line for line in log.read_text(errors="replace").splitlines() if "request_failed" in line
    ]
    problems += [f"the controller logged an unexpected exception: {line[:2000]}" for line in failed]
    return problems


if __name__ == "__main__":
    sys.exit(main())
