"""``netpersona lab up --replicas 2``: two ``serve`` replicas on a throwaway PostgreSQL cluster,
every agent given both. A change through the admin API reaches both VMs; after replica 1 is
killed with SIGKILL a further change still reaches both (the agents failed over); ``lab down``
leaves none of the namespaces, processes or the cluster the ledger recorded."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from netpersona.cli.lab_cmd import RUN_DIR
from netpersona.lab.fleet import netpersona_argv
from netpersona.lab.ledger import Ledger
from netpersona.lab.run import LabRun
from netpersona.lab.topology import replica_address
from netpersona.system.netns import kill_process, netns_identity, process_running
from tests.lab.test_lab_teardown import two_vm_scenario

pytestmark = [pytest.mark.kernel, pytest.mark.slow]


def lab(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*netpersona_argv(), "lab", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **env},
    )


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    except OSError:
        return []


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"nprp{os.getpid() % 100000}"
    yield name
    (RUN_DIR / f"{name}.lock").unlink(missing_ok=True)


def test_two_replicas_serve_both_vms_and_survive_losing_one(prefix: str, tmp_path: Path) -> None:
    workdir = RUN_DIR / prefix
    ledger: Ledger | None = None
    clients = contextlib.ExitStack()
    try:
        up = lab(
            "up", "--prefix", prefix, "--scenario", str(two_vm_scenario(tmp_path)),
            "--replicas", "2", timeout=400,
        )  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        ledger = Ledger.load(workdir)
        assert len(ledger.clusters) == 1
        (cluster,) = ledger.clusters.values()
        assert cluster.pid is not None
        assert cluster.start_time is not None
        assert process_running(cluster.pid, cluster.start_time)

        # Two replicas, each at its own address; each agent has both URLs, its nearest first.
        replicas = {}
        agents = {}
        for process in ledger.processes:
            argv = cmdline(process.pid)
            if "serve" in argv:
                replicas[argv[argv.index("--listen") + 1]] = process
            elif "agent" in argv:
                urls = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--metadata-url"]
                agents[argv[argv.index("--state-dir") + 1].rsplit("/", 1)[-1]] = urls
        assert sorted(replicas) == [f"{replica_address(n)}:80" for n in (1, 0)]
        first, second = (f"http://{replica_address(n)}" for n in (0, 1))
        assert agents == {"web1": [first, second], "api1": [second, first]}

        run = LabRun.attach(workdir, Console(quiet=True))
        clients.callback(run.close)
        before = run.views()
        run.wait_converged(run.set_context({"threat_level": "high"}), "raising the threat level")
        raised = run.views()
        assert all(raised[vm]["etag"] != before[vm]["etag"] for vm in ("web1", "api1"))

        killed = replicas[f"{replica_address(0)}:80"]
        assert kill_process(killed.pid, killed.start_time, signal.SIGKILL)
        # The operator side moves to replica 2 by itself, as the agents do.
        run.wait_converged(run.set_context({"threat_level": "low"}), "lowering it again")
        lowered = run.views()
        assert all(lowered[vm]["etag"] != raised[vm]["etag"] for vm in ("web1", "api1"))
        assert not process_running(killed.pid, killed.start_time)
        assert run.admin_replica == 1
        status = lab("status", "--prefix", prefix, "-o", "json")
        assert status.returncode == 0, status.stdout + status.stderr
        rows = json.loads(status.stdout)
        assert {row["vm"]: row["in_force"] for row in rows} == {"web1": True, "api1": True}
    finally:
        clients.close()
        down = lab("down", "--prefix", prefix)
        shutil.rmtree(workdir, ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr
    assert ledger is not None
    assert [name for name in ledger.namespaces if netns_identity(name) is not None] == []
    assert [p.pid for p in ledger.processes if process_running(p.pid, p.start_time)] == []
    assert cluster.pid is not None
    assert cluster.start_time is not None
    assert not process_running(cluster.pid, cluster.start_time)
    assert not Path(cluster.root).exists()


def test_replicas_without_postgresql_say_what_to_install(prefix: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-postgres"
    done = lab(
        "up", "--prefix", prefix, "--scenario", str(two_vm_scenario(tmp_path)),
        "--replicas", "2", NETPERSONA_PG_BIN=str(missing),
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    message = " ".join((done.stdout + done.stderr).split())
    assert "--replicas 2 needs PostgreSQL's initdb and pg_ctl" in message
    assert "apt-get install postgresql" in message
    assert not (RUN_DIR / prefix).exists()
