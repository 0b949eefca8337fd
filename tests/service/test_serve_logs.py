"""One log stream: the service's own events and uvicorn's error and access logs, in one format
on stderr (``--log-format``), as a real ``netpersona serve`` process writes them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.serve_process import NETPERSONA, serve

pytestmark = pytest.mark.subprocess


def _log(tmp_path: Path, port: int) -> list[str]:
    return (tmp_path / f"serve-{port}.log").read_text().splitlines()


def _request_and_stop(tmp_path: Path, *args: str) -> list[str]:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    with serve(data, "--log-level", "info", *args) as server:
        assert httpx.get(server.url + "/v1/no-such-thing?probe=1", timeout=10).status_code == 404
        assert httpx.get(server.url + "/metrics", timeout=10).status_code == 200
        port = server.port
        server.kill(15)  # SIGTERM: uvicorn's shutdown lines are logged too
    return _log(tmp_path, port)


def test_json_format_gives_one_object_per_line_with_access_fields(tmp_path: Path) -> None:
    lines = _request_and_stop(tmp_path, "--log-format", "json")
    events: list[dict[str, Any]] = []
    for line in lines:
        event = json.loads(line)  # every line, uvicorn's included, is one JSON object
        assert isinstance(event, dict), line
        assert {"event", "level", "timestamp", "logger"} <= event.keys(), line
        events.append(event)
    loggers = {e["logger"] for e in events}
    assert {"netpersona.serve", "uvicorn.error", "uvicorn.access"} <= loggers
    access = [e for e in events if e["logger"] == "uvicorn.access"]
    missing = [e for e in access if e["path"] == "/v1/no-such-thing?probe=1"]
    assert len(missing) == 1
    assert missing[0]["method"] == "GET"
    assert missing[0]["status"] == 404
    assert missing[0]["event"] == "http request"
    assert missing[0]["level"] == "info"
    assert any(e["path"] == "/metrics" and e["status"] == 200 for e in access)


def test_console_format_is_human_text(tmp_path: Path) -> None:
    lines = _request_and_stop(tmp_path, "--log-format", "console")
    assert lines
    for line in lines:
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
    access = [line for line in lines if "[uvicorn.access]" in line and "no-such-thing" in line]
    assert len(access) == 1
    assert "http request" in access[0]
    assert "method=GET" in access[0]
    assert "/v1/no-such-thing?probe=1" in access[0]
    assert "status=404" in access[0]
    assert any("[info" in line and "serving" in line for line in lines)


def test_the_format_comes_from_the_environment_and_no_access_log_drops_requests(
    tmp_path: Path,
) -> None:
    os.environ["NETPERSONA_LOG_FORMAT"] = "console"
    try:
        lines = _request_and_stop(tmp_path, "--no-access-log")
    finally:
        del os.environ["NETPERSONA_LOG_FORMAT"]
    assert any("serving" in line for line in lines)
    assert not any(line.startswith("{") for line in lines)
    assert not any("uvicorn.access" in line for line in lines)


@pytest.mark.parametrize(("option", "value"), [("--log-format", "xml"), ("--log-level", "loud")])
def test_a_bad_log_option_is_refused_naming_it(tmp_path: Path, option: str, value: str) -> None:
    done = subprocess.run(
        [NETPERSONA, "serve", "--data-dir", str(tmp_path / "data"), option, value],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert option in done.stderr
    assert value in done.stderr
    assert not (tmp_path / "data").exists()
