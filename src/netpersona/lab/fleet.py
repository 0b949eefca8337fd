"""Processes of a lab: the metadata service in the hypervisor namespace, an agent in each VM.

The operator side talks to the service the way an operator would, with ``netpersona admin``
run inside the hypervisor namespace (the host's own namespace has no route to the lab, by
design). Processes started here die with their namespace; given the topology's ledger, each
is also written down (pid and start time) as soon as it is started.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from netpersona.errors import KernelError
from netpersona.lab.topology import METADATA_ADDRESS, Topology

__all__ = ["LabProcesses", "netpersona_argv"]

METADATA_URL = f"http://{METADATA_ADDRESS}"


def netpersona_argv() -> list[str]:
    """How to run this same netpersona in another process (the venv's script, or -m)."""
    script = Path(sys.executable).with_name("netpersona")
    return [str(script)] if script.exists() else [sys.executable, "-m", "netpersona"]


@dataclass
class LabProcesses:
    """The metadata service and the VMs' agents of one lab, as processes in its namespaces."""

    topo: Topology
    workdir: Path
    service: subprocess.Popen[str] | None = None
    agents: dict[str, subprocess.Popen[str]] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.workdir / "service"

    @property
    def admin_socket(self) -> Path:
        return self.workdir / "service" / "admin.sock"

    def state_dir(self, vm: str) -> Path:
        return self.workdir / "agents" / vm

    def log_path(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def _spawn(self, netns: str, argv: Sequence[str], log_name: str) -> subprocess.Popen[str]:
        path = self.log_path(log_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as log:
            # ``ip netns exec`` execs the command in place: the pid is the command's.
            process = subprocess.Popen(
                ["ip", "netns", "exec", netns, *argv], stdout=log, stderr=log, text=True
            )
        if self.topo.ledger is not None:
            self.topo.ledger.started(process.pid, netns)
        return process

    # --- the service
    def start_service(self, timeout: float = 30.0, log_level: str = "warning") -> None:
        assert self.topo.hypervisor is not None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [*netpersona_argv(), "serve", "--data-dir", str(self.data_dir)]
        argv += ["--listen", f"{METADATA_ADDRESS}:80", "--log-level", log_level]
        argv += ["--admin-socket", str(self.admin_socket)]
        self.service = self._spawn(self.topo.hypervisor.name, argv, "service")
        self._wait_listening(timeout)

    def stop_service(self) -> None:
        if self.service is not None:
            self.service.kill()
            self.service.wait(10)
            self.service = None

    def _wait_listening(self, timeout: float) -> None:
        assert self.topo.hypervisor is not None
        probe = (
            "import socket,sys\n"
            "try: socket.create_connection((sys.argv[1], 80), 0.5).close()\n"
            "except OSError: sys.exit(1)\n"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.service is not None and self.service.poll() is not None:
                raise KernelError(
                    f"the service exited: {self.log_path('service').read_text()[-2000:]}"
                )
            done = self.topo.hypervisor.run(
                [sys.executable, "-c", probe, METADATA_ADDRESS], check=False
            )
            if done.returncode == 0 and (self.data_dir / "admin.token").exists():
                return
            time.sleep(0.1)
        raise KernelError(f"the service did not listen within {timeout:g}s")

    def admin(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``netpersona admin ARGS`` as an operator on the hypervisor runs it."""
        assert self.topo.hypervisor is not None
        token = (self.data_dir / "admin.token").read_text().strip()
        argv = [*netpersona_argv(), "admin", "--url", METADATA_URL, "--token", token, *args]
        return self.topo.hypervisor.run(argv, check=check)

    # --- agents
    def start_agent(self, vm: str, *extra: str) -> None:
        argv = [*netpersona_argv(), "agent", "--metadata-url", METADATA_URL]
        argv += ["--state-dir", str(self.state_dir(vm)), *extra]
        self.agents[vm] = self._spawn(self.topo.vms[vm].name, argv, f"agent-{vm}")

    def stop_agent(self, vm: str) -> None:
        agent = self.agents.pop(vm, None)
        if agent is not None:
            agent.terminate()
            try:
                agent.wait(10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait(10)

    def stop_all(self) -> None:
        for vm in list(self.agents):
            self.stop_agent(vm)
        self.stop_service()

    def nft(self, vm: str, *args: str) -> str:
        return self.topo.vms[vm].run(["nft", *args]).stdout

    def remove_workdir(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> float:
        """Poll ``predicate()`` until true; return the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if predicate():
                return time.monotonic() - started
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
