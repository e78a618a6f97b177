"""The Python client against a real controller process: shapes, errors, token discovery."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Controller, free_port

from cronmgr import AsyncClient, Client, CronAPIClient
from cronmgr.core.config import Settings
from cronmgr.core.errors import (
    BadRequest,
    ConfigError,
    Conflict,
    ControllerUnreachable,
    CronmgrError,
    NotFound,
    Unauthorized,
)

WRONG_TOKEN = "not-the-token-" + "x" * 20


def client_for(controller: Controller, token: str | None = None) -> Client:
    """A client of `controller` with its token, unless the test gives one."""
    return Client(controller.url, token=controller.token if token is None else token)


def write_log(settings: Settings, *lines: str) -> None:
    """Append lines to the daemon's log file, as the daemon would."""
    settings.log_file.parent.mkdir(parents=True, exist_ok=True)
    with settings.log_file.open("a") as fh:
        fh.writelines(line + "\n" for line in lines)


# --- a plain HTTP server for answers the controller never gives ---------------------------


class _Canned(http.server.BaseHTTPRequestHandler):
    status = 502
    body = b"<html>bad gateway</html>"

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def proxy_error_url() -> Iterator[str]:
    """A server on 127.0.0.1 that answers everything with 502 and an HTML page."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


# --- blocking client ----------------------------------------------------------------------


def test_health_answers_without_a_token(controller: Controller) -> None:
    with Client(controller.url, token="") as client:
        assert client.health()["status"] == "healthy"


def test_status_of_a_stopped_daemon(controller: Controller) -> None:
    status = client_for(controller).status()
    assert status["is_running"] is False
    assert status["pid"] is None
    assert status["message"] == "Daemon is not running"


def test_wrong_token_raises_unauthorized_with_status_401(controller: Controller) -> None:
    with pytest.raises(Unauthorized) as caught:
        client_for(controller, token=WRONG_TOKEN).status()
    assert caught.value.status == 401
    assert caught.value.detail == "invalid bearer token"


def test_interval_below_minimum_raises_bad_request_with_field_errors(
    controller: Controller,
) -> None:
    """The seed documents 400 for an interval under 10: BadRequest, with the field named."""
    with pytest.raises(BadRequest) as caught:
        client_for(controller).start(interval_seconds=5)
    assert caught.value.status == 400
    assert "interval_seconds" in caught.value.detail
    assert [e["field"] for e in caught.value.errors] == ["interval_seconds"]


def test_reload_of_a_stopped_daemon_raises_not_found(controller: Controller) -> None:
    with pytest.raises(NotFound, match="not running"):
        client_for(controller).reload()


def test_closed_port_raises_controller_unreachable_naming_url_and_remedy() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ControllerUnreachable) as caught:
        Client(url, token="t").status()
    assert url in caught.value.detail
    assert "cronmgr serve" in caught.value.detail


def test_non_json_error_body_becomes_the_detail_and_status_is_kept(proxy_error_url: str) -> None:
    with pytest.raises(CronmgrError) as caught:
        Client(proxy_error_url, token="t").status()
    assert caught.value.status == 502
    assert caught.value.detail == "<html>bad gateway</html>"


def test_a_url_that_is_not_http_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="invalid controller URL"):
        Client("localhost:8000", token="t")


def test_log_endpoints_return_the_documented_shapes(controller: Controller) -> None:
    write_log(controller.settings, "one", "two", "three")
    with client_for(controller) as client:
        assert client.get_logs(lines=2) == {"logs": "two\nthree\n", "line_count": 2}
        assert client.get_logs()["line_count"] == 3
        assert client.get_logs(lines=0)["line_count"] == 3  # the seed's "0 means default"
        assert client.tail_logs(lines=2) == "two\nthree\n"
        cleared = client.clear_logs()
        assert cleared["success"] is True
        assert cleared["message"] == "Logs cleared successfully"
        assert client.get_logs() == {"logs": "", "line_count": 0}
        assert client.tail_logs() == ""


def test_token_is_read_from_the_homes_token_file(controller: Controller) -> None:
    """No token and no URL given: both come from the settings, the token from its file."""
    assert controller.settings.api_token is None
    client = Client(settings=controller.settings)
    assert client.base_url == controller.url
    assert client.status()["is_running"] is False


def test_explicit_token_wins_over_the_token_file(controller: Controller) -> None:
    with pytest.raises(Unauthorized):
        Client(settings=controller.settings, token=WRONG_TOKEN).status()


def test_follow_logs_yields_the_tail_then_new_lines_then_lines_after_a_clear(
    controller: Controller,
) -> None:
    write_log(controller.settings, "old-1", "old-2", "old-3")
    client = client_for(controller)
    follower = client.follow_logs(lines=2, poll_seconds=0.02)
    try:
        assert [next(follower), next(follower)] == ["old-2", "old-3"]
        write_log(controller.settings, "new-1")
        assert next(follower) == "new-1"
        client.clear_logs()
        write_log(controller.settings, "fresh")
        assert next(follower) == "fresh"
    finally:
        follower.close()


def test_start_status_stop_of_a_real_daemon(controller: Controller) -> None:
    with client_for(controller) as client:
        started = client.start(interval_seconds=60)
        assert started["success"] is True
        assert f"(PID: {started['pid']})" in started["message"]
        status = client.status()
        assert status["is_running"] is True
        assert status["pid"] == started["pid"]
        with pytest.raises(Conflict) as caught:
            client.start()
        assert caught.value.status == 409
        assert client.stop()["success"] is True
        assert client.status()["is_running"] is False


def test_the_seed_usage_example_works_unchanged(
    controller: Controller, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The seed's example as written: `CronAPIClient()`, start 60, status, tail 20, stop."""
    for name, value in controller.env().items():
        if name.startswith("CRONMGR_"):
            monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    client = CronAPIClient()

    started = client.start(interval_seconds=60)
    assert started["success"] is True and "60 seconds" in started["message"]
    assert client.status()["is_running"] is True
    assert isinstance(client.tail_logs(lines=20), str)
    stopped = client.stop()
    assert stopped["success"] is True and stopped["message"] == "Daemon stopped successfully"


def test_cron_api_client_is_the_blocking_client() -> None:
    """The seed's class name is the blocking client, not a second implementation: it only
    changes the classes of the errors (see test_client_seed.py)."""
    assert issubclass(CronAPIClient, Client)
    own = {n for n, v in vars(CronAPIClient).items() if callable(v) and not n.startswith("__")}
    assert own == {"_send", "_open_stream", "_unreachable"}


# --- asyncio client -----------------------------------------------------------------------


async def test_async_client_essentials(controller: Controller) -> None:
    write_log(controller.settings, "a", "b")
    async with AsyncClient(controller.url, token=controller.token) as client:
        assert (await client.health())["status"] == "healthy"
        assert (await client.status())["is_running"] is False
        assert await client.get_logs(lines=1) == {"logs": "b\n", "line_count": 1}
        assert await client.tail_logs(lines=5) == "a\nb\n"
        assert (await client.clear_logs())["success"] is True
        with pytest.raises(BadRequest) as caught:
            await client.start(interval_seconds=5)
        assert caught.value.status == 400


async def test_async_client_errors(controller: Controller) -> None:
    async with AsyncClient(controller.url, token=WRONG_TOKEN) as client:
        with pytest.raises(Unauthorized):
            await client.status()
    async with AsyncClient(f"http://127.0.0.1:{free_port()}", token="t") as client:
        with pytest.raises(ControllerUnreachable, match="cronmgr serve"):
            await client.health()


async def test_async_client_reads_the_token_file(controller: Controller) -> None:
    async with AsyncClient(settings=controller.settings) as client:
        assert (await client.status())["is_running"] is False


async def test_async_non_json_error_body(proxy_error_url: str) -> None:
    async with AsyncClient(proxy_error_url, token="t") as client:
        with pytest.raises(CronmgrError) as caught:
            await client.status()
    assert caught.value.status == 502
    assert caught.value.detail == "<html>bad gateway</html>"


async def test_async_follow_logs(controller: Controller) -> None:
    write_log(controller.settings, "old-1", "old-2")
    async with AsyncClient(controller.url, token=controller.token) as client:
        follower = client.follow_logs(lines=1, poll_seconds=0.02)
        try:
            assert await anext(follower) == "old-2"
            write_log(controller.settings, "new-1")
            assert await anext(follower) == "new-1"
        finally:
            await follower.aclose()


async def test_async_start_status_stop(controller: Controller) -> None:
    async with AsyncClient(controller.url, token=controller.token) as client:
        started = await client.start(interval_seconds=60)
        assert (await client.status())["pid"] == started["pid"]
        assert (await client.stop())["success"] is True
        assert (await client.status())["is_running"] is False
