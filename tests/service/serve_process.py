"""A real ``netpersona serve`` process on a loopback socket, killed however a test ends."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

NETPERSONA = str(Path(sys.executable).with_name("netpersona"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServeProcess:
    data_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    extra_args: tuple[str, ...] = ()
    open_files: int | None = None  # the process's RLIMIT_NOFILE (soft and hard)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def start(self) -> None:
        log = (self.data_dir.parent / f"serve-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [
                NETPERSONA,
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--log-level",
                "warning",
                *self.extra_args,
            ],
            stdout=log,
            stderr=log,
            preexec_fn=self._limit_open_files if self.open_files else None,  # noqa: PLW1509
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"netpersona serve exited {self.process.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/openapi.json", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise AssertionError("netpersona serve did not start listening within 20s")

    def _limit_open_files(self) -> None:
        assert self.open_files is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))

    def rss(self) -> int:
        """The process's resident memory, in bytes."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)
            self.process.wait(timeout=20)
        self.process = None

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.admin_token}"}
        )

    def vm(self, address: str) -> httpx.Client:
        """A client whose connections come from ``address`` (any of 127.0.0.0/8)."""
        return httpx.Client(base_url=self.url, transport=httpx.HTTPTransport(local_address=address))


@contextlib.contextmanager
def serve(
    data_dir: Path, *extra_args: str, open_files: int | None = None
) -> Iterator[ServeProcess]:
    server = ServeProcess(data_dir, free_port(), extra_args=extra_args, open_files=open_files)
    try:
        server.start()
        yield server
    finally:
        server.kill()
