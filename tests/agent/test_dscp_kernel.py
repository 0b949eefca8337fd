"""Spec section 6 with real packets: a VM marks EF toward a priority-7 VM it does not allow,
whichever channel (the service's answer or gossip) spoke last.

    hypervisor: the service (169.254.169.254), and the test's own table that cuts L off
    L  10.77.0.21  persona low: priority 2, peers [{persona: friend}] (T never holds it)
    T  10.77.0.22  quiet (priority 1) -> top (priority 7, DSCP EF by priority)

T counts, in its own namespace and in a table of the test's own, the UDP datagrams from L on
port 9999 and those of them whose DSCP is EF (46), before anything else sees them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netpersona.lab.fleet import LabProcesses as Fleet
from netpersona.lab.topology import METADATA_ADDRESS, topology

pytestmark = pytest.mark.kernel

L, T = "10.77.0.21", "10.77.0.22"
PORT = 9999
SENT = 20
EF = 46
LOW = """network_persona:
  communication_mode: unicast
  security_profile: low
  allowed_protocols: [udp, icmp]
  priority: 2
  peers:
    - persona: friend
"""
QUIET = """network_persona:
  communication_mode: unicast
  security_profile: low
  allowed_protocols: [udp, icmp]
  priority: 1
"""
TOP = QUIET.replace("priority: 1", "priority: 7")
CUT_TABLE = "np_test_cut"
COUNT_TABLE = "np_test_dscp"
SEND = f"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range({SENT}):
    s.sendto(b"x", (sys.argv[1], {PORT}))
"""


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with topology(f"npds{os.getpid() % 100000}") as topo:
        topo.add_vm("l", f"{L}/24")
        topo.add_vm("t", f"{T}/24")
        fleet = Fleet(topo, tmp_path / "fleet")
        try:
            fleet.start_service()
            fleet.admin("add-instance", "l", "--address", L)
            fleet.admin("add-instance", "t", "--address", T)
            for name, text in (("low", LOW), ("quiet", QUIET), ("top", TOP)):
                path = tmp_path / f"{name}.yaml"
                path.write_text(text)
                fleet.admin("apply", str(path), "--name", name)
            fleet.admin("pin", "l", "low")
            fleet.admin("pin", "t", "quiet")
            yield fleet
        finally:
            fleet.stop_all()


def record(fleet: Fleet, vm: str) -> dict[str, Any]:
    try:
        body: dict[str, Any] = json.loads((fleet.state_dir(vm) / "agent.json").read_text())
    except (OSError, ValueError):
        return {}
    return body


def applied(fleet: Fleet, vm: str, persona: str) -> bool:
    body = record(fleet, vm)
    return body.get("persona") == persona and body.get("result") in ("applied", "unchanged")


def peers_answered_at(fleet: Fleet) -> float:
    """When L last took an answer of its peers view (its clock, the service's in the lab)."""
    watch = record(fleet, "l").get("watches", {}).get("peers", {})
    return float(watch.get("answered_at") or 0)


def dscp_toward(fleet: Fleet, vm: str) -> set[str]:
    """The addresses in ``vm``'s peer DSCP map (the higher-priority VMs it marks for)."""
    done = fleet.topo.vms[vm].run(
        ["nft", "-j", "list", "map", "inet", "netpersona", "peer_dscp_v4"], check=False
    )
    if done.returncode != 0:
        return set()
    for obj in json.loads(done.stdout)["nftables"]:
        if "map" in obj:
            return {str(e[0]) for e in obj["map"].get("elem", [])}
    return set()


def count_at_t(fleet: Fleet) -> tuple[int, int]:
    """(datagrams from L to PORT, of them marked EF) as T's namespace received them."""
    listing = json.loads(fleet.nft("t", "-j", "list", "table", "ip", COUNT_TABLE))
    counts = []
    for rule in (o["rule"] for o in listing["nftables"] if "rule" in o):
        counts += [int(e["counter"]["packets"]) for e in rule["expr"] if "counter" in e]
    assert len(counts) == 2, listing
    return counts[0], counts[1]


def send_and_count(fleet: Fleet) -> tuple[int, int]:
    """Send SENT datagrams from L to T; what T counted of them (all, EF)."""
    before = count_at_t(fleet)
    fleet.topo.vms["l"].run([sys.executable, "-c", SEND, T])

    def arrived() -> bool:
        return count_at_t(fleet)[0] - before[0] >= SENT

    fleet.wait_for(arrived, 10, "T to receive L's datagrams")
    after = count_at_t(fleet)
    return after[0] - before[0], after[1] - before[1]


def set_cut(fleet: Fleet, on: bool) -> None:
    """Cut L off from the metadata service (both ways), in the hypervisor, or restore it."""
    assert fleet.topo.hypervisor is not None
    if not on:
        fleet.topo.hypervisor.run(["nft", "delete", "table", "inet", CUT_TABLE])
        return
    script = (
        f"table inet {CUT_TABLE} {{\n"
        "  chain input { type filter hook input priority -10; policy accept;\n"
        f"    ip saddr {L} ip daddr {METADATA_ADDRESS} drop\n  }}\n"
        "  chain output { type filter hook output priority -10; policy accept;\n"
        f"    ip saddr {METADATA_ADDRESS} ip daddr {L} drop\n  }}\n}}\n"
    )
    fleet.topo.hypervisor.run(["nft", "-f", "-"], input=script)


def test_ef_toward_a_priority_7_vm_not_allowed_whichever_channel_spoke_last(
    fleet: Fleet,
) -> None:
    # T's counters, before its own table (priority -300: ahead of conntrack and filtering).
    count = (
        f"table ip {COUNT_TABLE} {{\n"
        "  chain pre { type filter hook prerouting priority -300; policy accept;\n"
        f"    ip saddr {L} udp dport {PORT} counter\n"
        f"    ip saddr {L} udp dport {PORT} ip dscp ef counter\n  }}\n}}\n"
    )
    fleet.topo.vms["t"].run(["nft", "-f", "-"], input=count)
    for vm in ("l", "t"):
        fleet.start_agent(vm, "--drift-interval", "3600", "--watch-timeout", "5")
    fleet.wait_for(lambda: record(fleet, "l").get("gossip_peers") == 1, 60, "L to learn T")
    fleet.wait_for(lambda: applied(fleet, "l", "low"), 60, "L to apply low")
    fleet.wait_for(lambda: applied(fleet, "t", "quiet"), 60, "T to apply quiet")
    # T (priority 1) is below L (2): L marks its own DSCP (AF11), not EF.
    assert dscp_toward(fleet, "l") == set()
    assert send_and_count(fleet) == (SENT, 0)

    # Gossip speaks last: L is cut off from the service, T turns priority 7.
    set_cut(fleet, True)
    cut_at = time.time()
    fleet.admin("pin", "t", "top")
    fleet.wait_for(lambda: dscp_toward(fleet, "l") == {T}, 30, "L to learn T's priority by gossip")
    assert send_and_count(fleet) == (SENT, SENT)
    assert 0 < record(fleet, "l")["service_answered_at"] <= cut_at

    # The service speaks last: its answer is newer than T's certificate, so the merge drops the
    # certificate (T is not among L's peers); the priority summary keeps T's EF.
    set_cut(fleet, False)
    restored_at = time.time()
    fleet.wait_for(lambda: peers_answered_at(fleet) > restored_at + 1, 90, "L's peers answer")
    time.sleep(2)  # a pass woken by the answer has run (the view it compiles with is the same)
    assert dscp_toward(fleet, "l") == {T}
    assert send_and_count(fleet) == (SENT, SENT)
    # L never allowed T: its peer set stays empty throughout.
    done = fleet.topo.vms["l"].run(
        ["nft", "-j", "list", "set", "inet", "netpersona", "peer_addrs_v4"], check=False
    )
    assert T not in done.stdout
