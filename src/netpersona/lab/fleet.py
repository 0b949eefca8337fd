"""Processes of a lab: the metadata service in the hypervisor namespace, an agent in each VM.

The operator side talks to the service the way an operator would, with ``netpersona admin``
run inside the hypervisor namespace (the host's own namespace has no route to the lab, by
design). Processes started here die with their namespace; given the topology's ledger, each
is also written down (pid and start time) as soon as it is started.

With ``replicas`` above 1 the service is that many ``serve`` processes on one throwaway
PostgreSQL cluster (:mod:`netpersona.lab.postgres`, made in the work directory and written
down in the ledger), replica ``n`` listening on :func:`~netpersona.lab.topology.replica_address`
``(n)``, and every agent is given every replica's URL, its nearest (VM ``i``: replica
``i mod replicas``) first.
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
from netpersona.lab.postgres import PgCluster, require_pg_bin
from netpersona.lab.topology import METADATA_ADDRESS, Topology, replica_address

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
    replicas: int = 1
    services: list[subprocess.Popen[str]] = field(default_factory=list)
    agents: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    cluster: PgCluster | None = None

    def replica_dir(self, n: int) -> Path:
        """Replica ``n``'s data directory (admin token, keys, admin socket)."""
        return self.workdir / ("service" if n == 0 else f"service-{n + 1}")

    @property
    def data_dir(self) -> Path:
        return self.replica_dir(0)

    @property
    def admin_socket(self) -> Path:
        return self.replica_dir(0) / "admin.sock"

    def admin_socket_of(self, n: int) -> Path:
        return self.replica_dir(n) / "admin.sock"

    def urls(self, index: int) -> list[str]:
        """The metadata URLs of the agent of VM number ``index``: its nearest replica first."""
        order = [(index + k) % self.replicas for k in range(self.replicas)]
        return [f"http://{replica_address(n)}" for n in order]

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
    @property
    def service(self) -> subprocess.Popen[str] | None:
        """The first replica's process."""
        return self.services[0] if self.services else None

    def check_replicas(self) -> None:
        """Refuse ``replicas`` above 1 without PostgreSQL, before anything is built."""
        if self.replicas > 1:
            require_pg_bin(f"--replicas {self.replicas}")

    def start_database(self) -> str:
        """The throwaway PostgreSQL cluster the replicas share, in the hypervisor's namespace
        (Unix socket only); returns the database's URL."""
        assert self.topo.hypervisor is not None
        bin_dir = require_pg_bin(f"--replicas {self.replicas}")
        root = self.workdir / "postgres"
        if self.topo.ledger is not None:
            self.topo.ledger.cluster_intent(root)
        self.cluster = PgCluster.at(bin_dir, root, self.topo.hypervisor.name)
        self.cluster.start()
        pid = self.cluster.pid()
        if pid is None:
            raise KernelError(f"PostgreSQL started but wrote no pid to {self.cluster.data}")
        if self.topo.ledger is not None:
            self.topo.ledger.cluster_started(root, pid)
        return self.cluster.create_database("netpersona")

    def start_service(self, timeout: float = 30.0, log_level: str = "warning") -> None:
        """Start every replica: the first alone (it makes the schema, the admin token and the
        signing keys), the others with copies of its token and keys."""
        assert self.topo.hypervisor is not None
        db = self.start_database() if self.replicas > 1 else None
        for n in range(self.replicas):
            data = self.replica_dir(n)
            data.mkdir(mode=0o700, parents=True, exist_ok=True)
            if n > 0:
                for name in ("admin.token", "certificate-keys.json"):
                    shutil.copy2(self.data_dir / name, data / name)
            argv = [*netpersona_argv(), "serve", "--data-dir", str(data)]
            argv += ["--listen", f"{replica_address(n)}:80", "--log-level", log_level]
            argv += ["--admin-socket", str(self.admin_socket_of(n))]
            argv += ["--db", db] if db is not None else []
            name = "service" if n == 0 else f"service-{n + 1}"
            self.services.append(self._spawn(self.topo.hypervisor.name, argv, name))
            self._wait_listening(n, name, timeout)

    def stop_service(self) -> None:
        for service in self.services:
            service.kill()
            service.wait(10)
        self.services.clear()

    def _wait_listening(self, n: int, name: str, timeout: float) -> None:
        assert self.topo.hypervisor is not None
        probe = (
            "import socket,sys\n"
            "try: socket.create_connection((sys.argv[1], 80), 0.5).close()\n"
            "except OSError: sys.exit(1)\n"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.services[n].poll() is not None:
                raise KernelError(f"the {name} exited: {self.log_path(name).read_text()[-2000:]}")
            done = self.topo.hypervisor.run(
                [sys.executable, "-c", probe, replica_address(n)], check=False
            )
            if done.returncode == 0 and (self.replica_dir(n) / "admin.token").exists():
                return
            time.sleep(0.1)
        raise KernelError(f"the {name} did not listen within {timeout:g}s")

    def admin(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``netpersona admin ARGS`` as an operator on the hypervisor runs it."""
        assert self.topo.hypervisor is not None
        token = (self.data_dir / "admin.token").read_text().strip()
        argv = [*netpersona_argv(), "admin", "--url", METADATA_URL, "--token", token, *args]
        return self.topo.hypervisor.run(argv, check=check)

    # --- agents
    def start_agent(self, vm: str, *extra: str, index: int = 0) -> None:
        """The agent of ``vm``, the ``index``-th VM (which picks its nearest replica)."""
        argv = [*netpersona_argv(), "agent"]
        for url in self.urls(index):
            argv += ["--metadata-url", url]
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
