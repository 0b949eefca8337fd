"""The agent with real processes: the service in a hypervisor namespace, agents in VM namespaces.

Each test checks what a user would: the VM's kernel (its nftables table, read back), the
service's record of what the agent reported, and packets where it matters.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from netpersona.lab.fleet import LabProcesses as Fleet
from netpersona.lab.fleet import netpersona_argv
from netpersona.lab.topology import topology
from netpersona.store.sqlite import SqliteStore

pytestmark = pytest.mark.kernel

WEB = """network_persona:
  communication_mode: unicast
  security_profile: medium
  allowed_protocols: [tcp/8080, udp/9999, icmp]
  priority: 3
"""


# Counts UDP datagrams on a port for a while, then prints the count.
RECEIVER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(0.2)
n, end = 0, time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        s.recv(64)
        n += 1
    except TimeoutError:
        pass
print(n)
"""
# Sends a datagram every 20 ms for a while, then prints how many it sent.
SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n, end = 0, time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    s.sendto(b"x", (sys.argv[1], int(sys.argv[2])))
    n += 1
    time.sleep(0.02)
print(n)
"""


def persona_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def with_port(port: int) -> str:
    return WEB.replace("tcp/8080", f"tcp/{port}")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with topology(f"npag{os.getpid() % 100000}") as topo:
        topo.add_vm("vm1", "10.77.0.11/24")
        fleet = Fleet(topo, tmp_path / "fleet")
        try:
            fleet.start_service()
            fleet.admin("add-instance", "vm1", "--address", "10.77.0.11", "--label", "app=web")
            fleet.admin("apply", str(persona_file(tmp_path, "web", WEB)), "--name", "web")
            fleet.admin("pin", "vm1", "web")
            yield fleet
        finally:
            fleet.stop_all()


def table(fleet: Fleet) -> str:
    return (
        fleet.topo.vms["vm1"]
        .run(["nft", "list", "table", "inet", "netpersona"], check=False)
        .stdout
    )


def allows_tcp(listing: str, port: int) -> bool:
    """Whether the listed table accepts TCP to ``port``: the port rule names the set
    ``allow_tcp``, which holds the port (alone or in a range)."""
    if "tcp dport @allow_tcp accept" not in listing:
        return False
    found = re.search(r"set allow_tcp \{[^}]*?elements = \{([^}]*)\}", listing)
    for item in found.group(1).split(",") if found else ():
        first, _, last = item.strip().partition("-")
        if int(first) <= port <= int(last or first):
            return True
    return False


def table_handle(fleet: Fleet) -> int:
    listing = json.loads(fleet.nft("vm1", "-j", "list", "table", "inet", "netpersona"))
    return int(next(o["table"]["handle"] for o in listing["nftables"] if "table" in o))


def test_persona_change_reaches_the_kernel(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start_agent("vm1", "--drift-interval", "3600")
    fleet.wait_for(lambda: allows_tcp(table(fleet), 8080), 30, "the first persona")
    fleet.admin("apply", str(persona_file(tmp_path, "web2", with_port(9090))), "--name", "web")
    took = fleet.wait_for(lambda: allows_tcp(table(fleet), 9090), 15, "the new version")
    assert not allows_tcp(table(fleet), 8080)
    assert took < 15
    status = fleet.admin("status", "vm1").stdout
    assert "applied" in status
    # On the VM, `netpersona status` says what the agent holds and why.
    argv = [*netpersona_argv(), "status", "--state-dir", str(fleet.state_dir("vm1"))]
    local = fleet.topo.vms["vm1"].run(argv).stdout
    assert "agent: vm1 holds web v2 (applied); metadata service reachable" in local
    assert "control channel: listening, 0 peers learned; rejected: none" in local


def test_service_outage_keeps_rules_and_catches_up(fleet: Fleet) -> None:
    fleet.start_agent("vm1", "--drift-interval", "3600")
    fleet.wait_for(lambda: allows_tcp(table(fleet), 8080), 30, "the first persona")
    before, handle = table(fleet), table_handle(fleet)
    record = fleet.state_dir("vm1") / "agent.json"

    def service_is(state: str) -> bool:
        return bool(json.loads(record.read_text())["service"] == state)

    # A restart with nothing changed: the agent resumes its watch, and reloads nothing.
    fleet.stop_service()
    fleet.wait_for(lambda: service_is("unreachable"), 30, "the agent to notice the outage")
    assert table(fleet) == before, "the kernel changed while the service was away"
    fleet.start_service()
    fleet.wait_for(lambda: service_is("reachable"), 60, "the agent to reconnect")
    time.sleep(1)
    assert table_handle(fleet) == handle
    assert json.loads(record.read_text())["result"] in ("applied", "unchanged")
    fleet.stop_service()
    # A change made while the service is down (written to its database by the store itself).
    store = open_store(fleet)
    store.put_persona("web", json.dumps(yaml.safe_load(with_port(7070))), "test")
    store.close()
    assert table(fleet) == before
    fleet.start_service()
    fleet.wait_for(lambda: allows_tcp(table(fleet), 7070), 40, "the change after the outage")


def test_invalid_persona_is_refused_and_reported(fleet: Fleet) -> None:
    fleet.start_agent("vm1", "--drift-interval", "3600")
    fleet.wait_for(lambda: allows_tcp(table(fleet), 8080), 30, "the first persona")
    before = table(fleet)
    # Bypass the admin API's validation: store a broken version straight into the database,
    # then restart the service so it serves it.
    fleet.stop_service()
    store = open_store(fleet)
    broken = {
        "communication_mode": "unicast",
        "security_profile": "medium",
        "allowed_protocols": ["tcp/99999"],
        "priority": 3,
    }
    store.put_persona("web", json.dumps(broken), "test")
    store.close()
    fleet.start_service()
    fleet.wait_for(
        lambda: "tcp/99999" in fleet.admin("status", "vm1").stdout, 40, "the reported error"
    )
    assert table(fleet) == before
    assert "failed" in fleet.admin("status", "vm1").stdout


def test_agent_restart_does_not_reload_the_table(fleet: Fleet) -> None:
    fleet.start_agent("vm1", "--drift-interval", "3600")
    fleet.wait_for(lambda: allows_tcp(table(fleet), 8080), 30, "the first persona")
    handle = table_handle(fleet)
    record = fleet.state_dir("vm1") / "agent.json"
    # A steady UDP stream into the VM across the restart: every datagram must arrive.
    receiver = fleet.topo.vms["vm1"].popen(
        [sys.executable, "-c", RECEIVER, "9999", "8"], stdout=subprocess.PIPE
    )
    time.sleep(0.5)
    assert fleet.topo.hypervisor is not None
    sender = fleet.topo.hypervisor.popen(
        [sys.executable, "-c", SENDER, "10.77.0.11", "9999", "6"], stdout=subprocess.PIPE
    )
    time.sleep(1)
    fleet.stop_agent("vm1")
    first = json.loads(record.read_text())
    fleet.start_agent("vm1", "--drift-interval", "3600")

    def converged_again() -> bool:
        now = json.loads(record.read_text())
        return bool(now["updated_at"] > first["updated_at"] and now["result"])

    fleet.wait_for(converged_again, 30, "the restarted agent")
    assert json.loads(record.read_text())["result"] == "unchanged"
    assert table_handle(fleet) == handle
    sent = int(sender.communicate(timeout=30)[0])
    received = int(receiver.communicate(timeout=30)[0])
    assert sent > 100
    assert received == sent


def test_drift_is_repaired(fleet: Fleet) -> None:
    fleet.start_agent("vm1", "--drift-interval", "1")
    fleet.wait_for(lambda: allows_tcp(table(fleet), 8080), 30, "the first persona")
    vm = fleet.topo.vms["vm1"]
    vm.run(["nft", "flush", "chain", "inet", "netpersona", "in_new"])

    def in_new(*, check: bool = True) -> str:
        argv = ["nft", "list", "chain", "inet", "netpersona", "in_new"]
        return vm.run(argv, check=check).stdout

    assert "tcp dport @allow_tcp accept" not in in_new()
    # While the agent replaces the table, a listing can race the transaction and fail (nft
    # 1.0.6 does not retry an interrupted dump): such a poll just counts as "not yet".
    fleet.wait_for(
        lambda: "tcp dport @allow_tcp accept" in in_new(check=False), 20, "the drift repair"
    )


def open_store(fleet: Fleet) -> SqliteStore:
    return SqliteStore(fleet.data_dir / "netpersona.db")
