"""`CronAPIClient`, the seed's client class, against a real controller process: the scripts
written for the Pipeline Cron Manager API catch `requests.HTTPError` (its client called
`raise_for_status()`), and keep doing so; without requests the errors are cronmgr's own."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import requests
from support import Controller, free_port

from cronmgr import Client, CronAPIClient
from cronmgr.core.errors import BadRequest, ControllerUnreachable, CronmgrError, NotFound


def seed_client(controller: Controller) -> CronAPIClient:
    """The seed's class, pointed at the test controller with its token."""
    return CronAPIClient(controller.url, token=controller.token)


def test_a_seed_script_catching_requests_http_error_keeps_working(
    controller: Controller,
) -> None:
    """The seed's 400 for an interval under 10, caught the way its scripts catch it, with
    the answer in `.response` as requests would hold it; the project's class and fields too."""
    try:
        seed_client(controller).start(interval_seconds=5)
    except requests.HTTPError as exc:
        caught = exc
    else:
        pytest.fail("an interval of 5 s was accepted")
    assert caught.response is not None and caught.response.status_code == 400
    assert caught.response.json()["detail"] == str(caught)
    assert "greater than or equal to 10" in caught.response.text
    assert caught.response.headers["Content-Type"].startswith("application/json")
    assert caught.response.url == controller.url + "/api/cron/start"
    assert isinstance(caught, BadRequest) and isinstance(caught, CronmgrError)
    assert caught.status == 400 and caught.errors[0]["field"] == "interval_seconds"
    with pytest.raises(requests.HTTPError, match="400 Client Error: Bad Request"):
        caught.response.raise_for_status()  # the Response is whole enough for requests


def test_every_status_class_is_also_an_http_error(controller: Controller) -> None:
    """A 404 is NotFound and HTTPError at once; `except RequestException` catches it too."""
    with pytest.raises(requests.RequestException) as caught:
        seed_client(controller).get_target("no-such-target")
    assert isinstance(caught.value, NotFound) and isinstance(caught.value, requests.HTTPError)
    assert caught.value.response is not None and caught.value.response.status_code == 404
    assert type(caught.value).__name__ == "NotFound"


def test_an_unreachable_controller_is_a_requests_connection_error() -> None:
    """As requests raised when the API was down; still ControllerUnreachable, no response."""
    client = CronAPIClient(f"http://127.0.0.1:{free_port()}", token="t" * 20, timeout=5)
    with pytest.raises(requests.ConnectionError) as caught:
        client.status()
    assert isinstance(caught.value, ControllerUnreachable)
    assert caught.value.response is None and "cannot reach" in str(caught.value)


def test_the_plain_client_keeps_the_project_classes_only(controller: Controller) -> None:
    """Only the seed's class mixes requests in; `Client` raises cronmgr's classes as before."""
    with pytest.raises(BadRequest) as caught:
        Client(controller.url, token=controller.token).start(interval_seconds=5)
    assert not isinstance(caught.value, requests.RequestException)


# Run in a fresh interpreter where `import requests` fails, as on a machine without it.
WITHOUT_REQUESTS = """
import json, sys
sys.modules["requests"] = None  # the import system then raises ImportError for it
from cronmgr import CronAPIClient
from cronmgr.core.errors import BadRequest
try:
    CronAPIClient(sys.argv[1], token=sys.argv[2]).start(interval_seconds=5)
except BadRequest as exc:
    print(json.dumps({"class": type(exc).__module__ + "." + type(exc).__qualname__,
                      "status": exc.status, "oserror": isinstance(exc, OSError)}))
"""


def test_without_requests_the_errors_are_the_project_classes(controller: Controller) -> None:
    """requests stays optional: the client imports and raises cronmgr's own BadRequest."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(WITHOUT_REQUESTS), controller.url, controller.token],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answer = json.loads(done.stdout)
    assert answer == {"class": "cronmgr.core.errors.BadRequest", "status": 400, "oserror": False}
