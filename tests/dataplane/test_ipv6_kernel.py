"""IPv6 with real packets: outbound allow and deny, multicast (delivered, refused, and sent to
a listed group nobody receives), and peer set updates, each drop seen in its counter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from netpersona.compiler import compile_plan, resolve_peer_sets
from netpersona.dataplane import Applier, LinuxKernel, StateStore
from netpersona.model import parse_persona_text
from netpersona.probe.runner import listening, send_probes
from netpersona.testing.topology import Lab, lab
from tests.dataplane.packets import apply, drops

pytestmark = pytest.mark.kernel

COUNT = 3
TIMEOUT = 0.5


@pytest.fixture
def net() -> Iterator[Lab]:
    with lab() as built:
        yield built


def _tcp(probe_id: str, dst: str, port: int) -> dict[str, object]:
    return {"id": probe_id, "proto": "tcp", "dst": dst, "port": port, "timeout": TIMEOUT}


@pytest.mark.parametrize("profile", ["high", "low"])
def test_ipv6_outbound_is_allowed_and_denied_per_profile(
    net: Lab, tmp_path: Path, profile: str
) -> None:
    persona = f"""
network_persona:
  communication_mode: unicast
  security_profile: {profile}
  allowed_protocols: [postgres]
  priority: 3
  peers: [{{cidr: fd77::2/128}}]
"""
    applier = apply(net.vm, tmp_path, persona, net.facts())
    with listening(net.peer, tcp=[5432, 9]), listening(net.stranger, tcp=[5432]):
        seen = send_probes(
            net.vm,
            [
                _tcp("peer-postgres", net.peer6, 5432),
                _tcp("peer-discard", net.peer6, 9),
                _tcp("stranger-postgres", net.stranger6, 5432),
            ],
        )
    outcome = {probe_id: bool(result["ok"]) for probe_id, result in seen.items()}
    counters = drops(applier)
    applier.remove()
    high = profile == "high"
    # Spec section 4: high sends allowed protocols to permitted peers only; low anything.
    assert outcome == {
        "peer-postgres": True,
        "peer-discard": not high,
        "stranger-postgres": not high,
    }
    assert (counters["drop_protocol"] > 0) == high, counters
    assert (counters["drop_not_peer"] > 0) == high, counters


MULTICAST = """
network_persona:
  communication_mode: multicast
  security_profile: medium
  allowed_protocols: [udp/5001, udp/5002]
  priority: 3
  multicast_groups: [239.1.1.1, ff15::101, ff15::102]
"""


def _udp(probe_id: str, dst: str, port: int) -> dict[str, object]:
    return {"id": probe_id, "proto": "udp", "dst": dst, "port": port, "ifname": "eth0",
            "count": COUNT}  # fmt: skip


def test_ipv6_multicast_listed_refused_and_unreceived(net: Lab, tmp_path: Path) -> None:
    applier = apply(net.vm, tmp_path, MULTICAST, net.facts())
    # The VM joins a listed and an unlisted group on 5001; ff15::102 is listed, nobody joins.
    vm_groups = ["ff15::101:5001", "ff15::999:5001", "239.1.1.1:5001"]
    inbound = [
        _udp("in-listed", "ff15::101", 5001),
        _udp("in-unlisted", "ff15::999", 5001),  # joined, but the persona refuses it
        _udp("in-unjoined", "ff15::102", 5001),  # listed, but no socket joined or bound
        _udp("in-no-port", "ff15::101", 5002),  # listed and joined, nothing on that port
        _udp("in-no-port4", "239.1.1.1", 5002),
    ]
    with listening(net.vm, groups=vm_groups, ifname="eth0") as vm_listener:
        send_probes(net.peer, inbound)
        arrived = vm_listener.tokens()
    counters = drops(applier)
    assert arrived == {"in-listed"}
    assert counters["drop_multicast"] == COUNT, counters
    assert counters["drop_mcast_unjoined"] == 3 * COUNT, counters

    outbound = [_udp("out-listed", "ff15::101", 5001), _udp("out-unlisted", "ff15::999", 5001)]
    with listening(net.peer, groups=["ff15::101:5001", "ff15::999:5001"], ifname="eth0") as peer:
        sent = send_probes(net.vm, outbound)
        arrived = peer.tokens()
    assert arrived == {"out-listed"}
    assert sent["out-listed"]["ok"]
    # An output drop fails the send (EPERM), so the sender stops after its first datagram.
    assert not sent["out-unlisted"]["ok"]
    assert drops(applier)["drop_multicast"] == COUNT + 1
    applier.remove()


RESTRICTED = parse_persona_text(
    """
network_persona:
  communication_mode: restricted
  security_profile: high
  allowed_protocols: [postgres]
  priority: 2
  peers: [{persona: api}]
"""
)


def _peer(name: str, address: str) -> dict[str, object]:
    return {"instance": name, "addresses": [address], "persona": "api", "priority": 1}


def _reach(net: Lab, applier: Applier) -> dict[str, bool]:
    """Who can open a connection to whom over IPv6, as seen from the VM."""
    with listening(net.vm, tcp=[5432]), listening(net.stranger, tcp=[5432]):
        peer_in = send_probes(net.peer, [_tcp("c", net.vm6, 5432)])["c"]["ok"]
        stranger_in = send_probes(net.stranger, [_tcp("c", net.vm6, 5432)])["c"]["ok"]
        vm_out = send_probes(net.vm, [_tcp("c", net.stranger6, 5432)])["c"]["ok"]
    return {"peer>vm": peer_in, "stranger>vm": stranger_in, "vm>stranger": vm_out}


def test_ipv6_peer_joins_and_leaves_in_place(net: Lab, tmp_path: Path) -> None:
    applier = Applier(LinuxKernel(net.vm.name), StateStore(tmp_path / "state"))
    only_peer = net.facts(peers=[_peer("peer", net.peer6)])
    applier.apply(compile_plan(RESTRICTED, only_peer), "db")
    handles = [o["chain"]["handle"] for o in applier.kernel.nft_table() or () if "chain" in o]
    assert _reach(net, applier) == {"peer>vm": True, "stranger>vm": False, "vm>stranger": False}
    refused = drops(applier)["drop_not_peer"]
    assert refused > 0

    both = net.facts(peers=[_peer("peer", net.peer6), _peer("stranger", net.stranger6)])
    assert applier.update_peers(resolve_peer_sets(RESTRICTED, both)).added >= 1
    assert _reach(net, applier) == {"peer>vm": True, "stranger>vm": True, "vm>stranger": True}
    assert drops(applier)["drop_not_peer"] == refused

    only_stranger = net.facts(peers=[_peer("stranger", net.stranger6)])
    assert applier.update_peers(resolve_peer_sets(RESTRICTED, only_stranger)).deleted >= 1
    assert _reach(net, applier) == {"peer>vm": False, "stranger>vm": True, "vm>stranger": True}
    assert drops(applier)["drop_not_peer"] > refused
    # Set elements changed; the table was never reloaded.
    assert [o["chain"]["handle"] for o in applier.kernel.nft_table() or () if "chain" in o] == (
        handles
    )
    applier.remove()
