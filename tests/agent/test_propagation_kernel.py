"""Issue 8's acceptance, with real namespaces and processes: a restricted VM follows its peers'
persona changes learned only over the control channel, cut off from the metadata service.

    hypervisor: the service (169.254.169.254), and the test's own nftables table that cuts A off
    A  10.77.0.11  persona front: restricted, peers [{persona: api}], tcp/8080 open to them
    B  10.77.0.12  api -> web
    C  10.77.0.13  web -> api
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from netpersona.lab.fleet import LabProcesses as Fleet
from netpersona.lab.topology import METADATA_ADDRESS, topology

pytestmark = pytest.mark.kernel

ADDRESSES = {"a": "10.77.0.11", "b": "10.77.0.12", "c": "10.77.0.13"}
FRONT = """network_persona:
  communication_mode: restricted
  security_profile: medium
  allowed_protocols: [tcp/8080, icmp]
  priority: 2
  peers:
    - persona: api
"""
# B and C have ordinary selectors that match nobody in the lab: their gossip seeds come from
# the service's seed list, not from their peer view (which is empty).
SERVER = """network_persona:
  communication_mode: unicast
  security_profile: low
  allowed_protocols: [tcp/8080, icmp]
  priority: 3
  peers:
    - persona: admin-console
    - labels: {role: backup}
"""
# Accepts TCP connections on a port until killed.
LISTENER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
while True:
    s.accept()[0].close()
"""
# Exit 0 when a TCP connection succeeds within a second, 1 otherwise.
CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
"""
CUT_TABLE = "np_test_cut"
# Long enough for agent.json to carry the latest gossip counters (they are copied every 5 s).
COUNTERS_WAIT = 5.5


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with topology(f"npgp{os.getpid() % 100000}") as topo:
        for vm, address in ADDRESSES.items():
            topo.add_vm(vm, f"{address}/24")
        fleet = Fleet(topo, tmp_path / "fleet")
        try:
            fleet.start_service()
            for vm, address in ADDRESSES.items():
                fleet.admin("add-instance", vm, "--address", address, "--label", "lab=gossip")
            for name, text in (("front", FRONT), ("api", SERVER), ("web", SERVER)):
                path = tmp_path / f"{name}.yaml"
                path.write_text(text)
                fleet.admin("apply", str(path), "--name", name)
            for vm, persona in (("a", "front"), ("b", "api"), ("c", "web")):
                fleet.admin("pin", vm, persona)
            yield fleet
        finally:
            fleet.stop_all()


def record(fleet: Fleet, vm: str) -> dict[str, Any]:
    try:
        body: dict[str, Any] = json.loads((fleet.state_dir(vm) / "agent.json").read_text())
    except (OSError, ValueError):
        return {}
    return body


def knows_both(fleet: Fleet, vm: str) -> bool:
    return record(fleet, vm).get("gossip_peers") == 2


def peer_set(fleet: Fleet, vm: str) -> set[str]:
    done = fleet.topo.vms[vm].run(
        ["nft", "-j", "list", "set", "inet", "netpersona", "peer_addrs_v4"], check=False
    )
    if done.returncode != 0:
        return set()
    for obj in json.loads(done.stdout)["nftables"]:
        if "set" in obj:
            return {str(e) for e in obj["set"].get("elem", [])}
    return set()


def table_handle(fleet: Fleet, vm: str) -> int:
    listing = json.loads(fleet.nft(vm, "-j", "list", "table", "inet", "netpersona"))
    return int(next(o["table"]["handle"] for o in listing["nftables"] if "table" in o))


def connects(fleet: Fleet, source: str, target: str) -> bool:
    argv = [sys.executable, "-c", CONNECT, ADDRESSES[target], "8080"]
    return fleet.topo.vms[source].run(argv, check=False).returncode == 0


def cut_counter(fleet: Fleet) -> int:
    """Packets from A to the metadata service the cut dropped."""
    assert fleet.topo.hypervisor is not None
    listing = fleet.topo.hypervisor.run(["nft", "-j", "list", "table", "inet", CUT_TABLE]).stdout
    rules = [o["rule"] for o in json.loads(listing)["nftables"] if "rule" in o]
    for rule in rules:
        for expr in rule["expr"] if rule["chain"] == "input" else ():
            if "counter" in expr:
                return int(expr["counter"]["packets"])
    raise AssertionError("the cut's input rule has no counter")


def test_peers_follow_persona_changes_over_the_control_channel_alone(fleet: Fleet) -> None:
    for vm in ADDRESSES:
        fleet.start_agent(vm, "--drift-interval", "3600", "--watch-timeout", "5")
    listener = fleet.topo.vms["a"].popen([sys.executable, "-c", LISTENER, "8080"])
    try:
        fleet.wait_for(lambda: peer_set(fleet, "a") == {ADDRESSES["b"]}, 60, "A to accept B")
        # A's control channel is up and has learned both others before the cut.
        fleet.wait_for(
            lambda: record(fleet, "a").get("gossip_peers") == 2, 30, "A to learn B and C"
        )
        # B and C, whose selectors match nobody, gossip from the service's seed list.
        for vm in ("b", "c"):
            fleet.wait_for(partial(knows_both, fleet, vm), 30, f"{vm} to learn both")
            assert peer_set(fleet, vm) == set()
        fleet.wait_for(lambda: connects(fleet, "b", "a"), 10, "B to reach A on tcp/8080")
        assert not connects(fleet, "c", "a")
        handle = table_handle(fleet, "a")

        # Cut A off from the metadata service, in the hypervisor, with a table of our own.
        assert fleet.topo.hypervisor is not None
        # Both ways: an answer to a long-poll sent before the cut must not land either.
        a_to_md = f"ip saddr {ADDRESSES['a']} ip daddr {METADATA_ADDRESS}"
        md_to_a = f"ip saddr {METADATA_ADDRESS} ip daddr {ADDRESSES['a']}"
        script = (
            f"table inet {CUT_TABLE} {{\n"
            "  chain input { type filter hook input priority -10; policy accept;\n"
            f"    {a_to_md} counter drop\n  }}\n"
            "  chain output { type filter hook output priority -10; policy accept;\n"
            f"    {md_to_a} counter drop\n  }}\n}}\n"
        )
        fleet.topo.hypervisor.run(["nft", "-f", "-"], input=script)
        cut_at = time.time()

        fleet.admin("pin", "b", "web")
        fleet.admin("pin", "c", "api")
        took = fleet.wait_for(
            lambda: peer_set(fleet, "a") == {ADDRESSES["c"]}, 30, "A to swap B for C"
        )
        assert not connects(fleet, "b", "a")
        assert connects(fleet, "c", "a")
        # A learned this only over the control channel: the service never answered it again;
        # A kept trying (the cut dropped its packets) and says the service is unreachable.
        fleet.wait_for(
            lambda: record(fleet, "a").get("service") == "unreachable", 40, "A to give up"
        )
        time.sleep(COUNTERS_WAIT)
        after = record(fleet, "a")
        assert 0 < after["service_answered_at"] <= cut_at
        assert cut_counter(fleet) > 0
        assert table_handle(fleet, "a") == handle, "the table was reloaded, not updated in place"
        assert after["gossip"] == "listening"
        assert after["gossip_counters"]["accepted"] >= 4
        print(f"A swapped its peer set {took:.2f}s after the admin calls")
    finally:
        listener.kill()
        listener.wait(10)
