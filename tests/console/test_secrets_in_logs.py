"""Signing in to the console leaves the token in no URL and no log line, even at debug level."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.service.serve_process import serve

pytestmark = pytest.mark.subprocess


def test_the_token_is_in_no_log_line_and_no_url(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with serve(data, "--log-level", "debug") as server:
        token = server.admin_token
        with httpx.Client(base_url=server.url) as browser:
            signed = browser.post("/ui/sign-in", data={"token": token})
            assert signed.status_code == 303
            assert token not in signed.headers["location"]
            assert token not in signed.headers["set-cookie"]
            assert browser.get("/ui/").status_code == 200
            assert browser.post("/ui/sign-in", data={"token": token + "x"}).status_code == 401
        log = (tmp_path / f"serve-{server.port}.log").read_text()
    assert '"serving"' in log  # this is the service's log, and it logged at debug level
    assert token not in log
