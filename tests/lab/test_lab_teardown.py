"""``netpersona lab down`` removes what the lab created and nothing that only shares its name.

A namespace another user made under the lab's own prefix, and a process in it, must survive;
a lab whose process was killed with SIGKILL half-way through building must still be removed
completely (namespaces, their links, every process) from the ledger it left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from netpersona.cli.lab_cmd import RUN_DIR
from netpersona.lab.fleet import netpersona_argv
from netpersona.lab.ledger import Ledger
from netpersona.lab.run import exclusive
from netpersona.system.command import run
from netpersona.system.netns import (
    list_netns,
    netns_identity,
    process_running,
    processes_in,
)

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BUILD_TIMEOUT = 300.0


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"npdown{os.getpid() % 100000}"
    yield name
    (RUN_DIR / f"{name}.lock").unlink(missing_ok=True)


@pytest.fixture
def foreign(prefix: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """A namespace named like the lab's, and a process in it, made by someone else."""
    name = f"{prefix}-x"
    run(["ip", "netns", "add", name])
    process = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "600"], text=True)
    try:
        yield name, process
    finally:
        process.kill()
        process.wait(10)
        run(["ip", "netns", "delete", name], check=False)


def two_vm_scenario(tmp_path: Path) -> Path:
    scenario = yaml.safe_load((EXAMPLES / "lab" / "scenario.yaml").read_text())
    scenario["personas"] = {
        name: str((EXAMPLES / "lab" / path).resolve())
        for name, path in scenario["personas"].items()
    }
    scenario["policy"] = str(EXAMPLES / "lab" / "policy.yaml")
    scenario["vms"] = [vm for vm in scenario["vms"] if vm["name"] in ("web1", "api1")]
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return path


def lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*netpersona_argv(), "lab", *args], capture_output=True, text=True, timeout=120, check=False
    )


def assert_alive(foreign: tuple[str, subprocess.Popen[str]]) -> None:
    name, process = foreign
    assert name in list_netns()
    assert process.poll() is None, "the foreign process was killed"
    identity = netns_identity(name)
    assert identity is not None
    assert process.pid in processes_in(identity)


def test_lab_down_leaves_a_namespace_that_only_shares_its_prefix_alone(
    prefix: str, foreign: tuple[str, subprocess.Popen[str]]
) -> None:
    done = lab("down", "--prefix", prefix)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing to remove" in done.stdout
    assert_alive(foreign)


def wait_for_agents(ledger_dir: Path, process: subprocess.Popen[str], count: int) -> Ledger:
    """The ledger once ``count`` processes (the service, then agents) are written down."""
    deadline = time.monotonic() + BUILD_TIMEOUT
    while time.monotonic() < deadline:
        ledger = Ledger.load(ledger_dir)
        if len(ledger.processes) >= count:
            return ledger
        assert process.poll() is None, f"lab up ended early ({process.returncode})"
        time.sleep(0.1)
    raise AssertionError(f"lab up recorded fewer than {count} processes in {BUILD_TIMEOUT:g}s")


def test_a_lab_killed_half_way_is_removed_completely_by_lab_down(
    prefix: str, foreign: tuple[str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    scenario = two_vm_scenario(tmp_path)
    argv = [*netpersona_argv(), "lab", "up", "--prefix", prefix, "--scenario", str(scenario)]
    with (tmp_path / "lab-up.log").open("w") as log:
        up = subprocess.Popen(argv, stdout=log, stderr=log, text=True)
    try:
        # The service and the first agent run; the second agent is not started yet, or just.
        ledger = wait_for_agents(RUN_DIR / prefix, up, 2)
    finally:
        up.send_signal(signal.SIGKILL)
        up.wait(10)
    ledger = Ledger.load(RUN_DIR / prefix)
    names = list(ledger.namespaces)
    identities = [netns_identity(name) for name in names]
    processes = [(p.pid, p.start_time) for p in ledger.processes]
    assert len(names) == 3, names  # the hypervisor and both VMs were built
    assert all(identities), "a recorded namespace is missing before lab down"
    assert all(process_running(pid, start) for pid, start in processes), (
        "killing the lab process took its service and agents with it; nothing is left to test"
    )

    done = lab("down", "--prefix", prefix)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "removed 3 namespace(s)" in done.stdout
    left = set(list_netns())
    assert not left & set(names)
    for pid, start in processes:
        assert not process_running(pid, start), f"recorded process {pid} still runs"
    for identity in identities:
        assert identity is not None
        assert not processes_in(identity), "a process still runs in a namespace of the run"
    assert not (RUN_DIR / prefix).exists()
    assert_alive(foreign)
    assert f"{prefix}-x" in left


def test_a_lab_in_use_by_another_command_is_not_torn_down(prefix: str) -> None:
    with exclusive(RUN_DIR / prefix):
        done = lab("down", "--prefix", prefix)
    assert done.returncode == 4, done.stdout + done.stderr
    assert f"lab {prefix!r} is in use by another netpersona lab command" in done.stderr
