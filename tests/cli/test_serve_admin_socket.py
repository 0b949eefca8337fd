"""``netpersona serve --admin-socket``: the admin API on a 0600 Unix socket, no VM identity."""

from __future__ import annotations

import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from netpersona.lab.fleet import netpersona_argv
from tests.service.serve_process import free_port


@pytest.mark.subprocess
def test_admin_socket_serves_admin_api_only(tmp_path: Path) -> None:
    sock = tmp_path / "run" / "admin.sock"
    argv = [
        *netpersona_argv(),
        "serve",
        "--data-dir",
        str(tmp_path),
        "--listen",
        f"127.0.0.1:{free_port()}",
    ]
    argv += ["--admin-socket", str(sock), "--log-level", "warning"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not (sock.exists() and (tmp_path / "admin.token").exists()):
            assert time.monotonic() < deadline, "the socket did not appear"
            assert process.poll() is None, "netpersona serve exited"
            time.sleep(0.05)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        token = (tmp_path / "admin.token").read_text().strip()
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://local"
        ) as client:
            assert client.get("/v1/admin/personas").status_code == 401
            listed = client.get("/v1/admin/personas", headers={"Authorization": f"Bearer {token}"})
            assert listed.status_code == 200
            # No source address on a Unix socket: no VM can be identified through it.
            assert client.get("/v1/instance").status_code == 403
    finally:
        process.kill()
        process.wait(10)
