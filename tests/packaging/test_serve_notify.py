"""A real ``netpersona serve`` process tells systemd it is ready, then keeps its watchdog fed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.service.serve_process import NETPERSONA, free_port


@pytest.mark.subprocess
def test_serve_sends_ready_when_it_answers_then_watchdog(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(tmp_path / "notify"))
        notify.settimeout(30)
        env = {
            **os.environ,
            "NOTIFY_SOCKET": str(tmp_path / "notify"),
            "WATCHDOG_USEC": "1000000",
        }
        argv = [NETPERSONA, "serve", "--data-dir", str(tmp_path / "data")]
        argv += ["--listen", f"127.0.0.1:{port}", "--log-level", "warning"]
        process = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)
        try:
            assert notify.recv(4096) == b"READY=1"
            # Ready means of use: the socket answers and the database is there.
            assert httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=10).is_success
            assert (tmp_path / "data" / "netpersona.db").exists()
            assert notify.recv(4096) == b"WATCHDOG=1"
            assert notify.recv(4096) == b"WATCHDOG=1"
            process.send_signal(signal.SIGTERM)
            assert notify.recv(4096) == b"STOPPING=1"
            # uvicorn re-raises the signal it stopped for; systemd counts that as a clean stop.
            assert process.wait(30) in (0, -signal.SIGTERM)
        finally:
            process.kill()
            process.wait(30)
