"""Reverse-path filtering (spec section 4) and forwarding, checked with real packets.

The VM's namespace gets ``net.ipv4.conf.all.rp_filter=2``, the host-wide setting that used to
turn the high profile's strict check into a loose one: the check is now nftables' own and
counts what it drops (``drop_rpf``). Sources are spoofed by giving the peer extra addresses
that the VM routes back through another link (eth1) or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from netpersona.probe.runner import listening, send_probes
from netpersona.testing.topology import Lab, lab
from tests.dataplane.packets import apply, drops, send_frame

pytestmark = pytest.mark.kernel

PORT = 5001
COUNT = 3
PERSONA = """
network_persona:
  communication_mode: unicast
  security_profile: {profile}
  allowed_protocols: [udp/5001]
  priority: 3
  peers: [{{cidr: 10.0.0.0/8}}, {{cidr: fd00::/8}}]
"""
# Source -> (address the peer sends from, or None for its own) and whether each profile lets
# it in. Every spoofed source is a permitted peer, so only the reverse-path check stops it.
SOURCES: dict[str, tuple[str | None, str, dict[str, bool]]] = {
    "legit4": (None, "vm4", {"low": True, "medium": True, "high": True}),
    # The peer's own eth1 address, routed back through the VM's eth1: fails strict only.
    "other-link4": ("10.78.0.2", "vm4", {"low": True, "medium": True, "high": False}),
    # Routed back through the VM's default route (eth1): fails strict only.
    "far4": ("10.99.0.7", "vm4", {"low": True, "medium": True, "high": False}),
    "legit6": (None, "vm6", {"low": True, "medium": True, "high": True}),
    "other-link6": ("fd98::7", "vm6", {"low": True, "medium": True, "high": False}),
    # No route back at all: fails loose too (IPv6 has no rp_filter sysctl to do it).
    "unrouted6": ("fd99::7", "vm6", {"low": True, "medium": False, "high": False}),
}


@pytest.fixture
def net() -> Iterator[Lab]:
    with lab() as built:
        built.vm.run(["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=2"])
        built.vm.run(["ip", "-6", "route", "add", "fd98::/64", "dev", "eth1"])
        built.peer.run(["ip", "address", "add", "10.99.0.7/32", "dev", "eth0"])
        for address in ("fd98::7/128", "fd99::7/128"):
            built.peer.run(["ip", "address", "add", address, "dev", "eth0", "nodad"])
        yield built


@pytest.mark.parametrize("profile", ["high", "medium", "low"])
def test_spoofed_sources_are_dropped_and_counted_whatever_conf_all_says(
    net: Lab, tmp_path: Path, profile: str
) -> None:
    applier = apply(net.vm, tmp_path, PERSONA.format(profile=profile), net.facts())
    assert net.vm.run(["sysctl", "-n", "net.ipv4.conf.all.rp_filter"]).stdout.strip() == "2"
    probes = []
    for name, (src, dst, _outcome) in SOURCES.items():
        probe = {"id": name, "proto": "udp", "dst": getattr(net, dst), "port": PORT}
        probes.append({**probe, "count": COUNT, **({"src": src} if src else {})})
    with listening(net.vm, udp=[PORT]) as listener:
        sent = send_probes(net.peer, probes)
        arrived = listener.tokens()
    assert all(result["ok"] for result in sent.values()), sent
    expected = {name: outcome[profile] for name, (_s, _d, outcome) in SOURCES.items()}
    assert {name: name in arrived for name in SOURCES} == expected
    blocked = sum(not passes for passes in expected.values())
    counters = drops(applier)
    assert counters["drop_rpf"] == COUNT * blocked, counters
    assert counters["drop_not_peer"] == 0
    applier.remove()


def test_dhcp_and_broadcast_from_nowhere_pass_the_strict_check(net: Lab, tmp_path: Path) -> None:
    applier = apply(net.vm, tmp_path, PERSONA.format(profile="high"), net.facts())
    with listening(net.vm, udp=[68]) as listener:
        # A DHCP server (or relay) the VM has no route back to through eth0 (section 3).
        send_frame(net.peer, "eth0", "10.99.0.67", net.vm4, 67, 68)
        arrived = [r for r in listener.records() if r.get("port") == 68]
    assert [r["src"] for r in arrived] == ["10.99.0.67"]
    assert drops(applier)["drop_rpf"] == 0
    # Another client's discover, from 0.0.0.0: not a reverse-path failure, but broadcast,
    # which unicast mode drops.
    send_frame(net.peer, "eth0", "0.0.0.0", "255.255.255.255", 68, 67)
    after = drops(applier)
    assert after["drop_rpf"] == 0
    assert after["drop_broadcast"] == 1
    # The same packet as the server's reply but from another port is not exempt.
    send_frame(net.peer, "eth0", "10.99.0.67", net.vm4, 1067, 68)
    assert drops(applier)["drop_rpf"] == 1
    applier.remove()


def test_the_control_channel_is_not_exempt_from_the_reverse_path(net: Lab, tmp_path: Path) -> None:
    """Section 3 keeps the control channel open whatever the persona says, but a datagram with
    a forged source address is dropped (and counted) before the certificate verifier sees it;
    the peer's genuine one still arrives."""
    facts = net.facts()
    port = facts.control_port
    applier = apply(net.vm, tmp_path, PERSONA.format(profile="high"), facts)
    with listening(net.vm, udp=[port]) as listener:
        send_frame(net.peer, "eth0", "10.99.0.7", net.vm4, port, port)  # routed back via eth1
        send_frame(net.peer, "eth0", net.peer4, net.vm4, port, port)
        arrived = [r["src"] for r in listener.records() if r.get("port") == port]
    assert arrived == [net.peer4]
    assert drops(applier)["drop_rpf"] == 1
    applier.remove()


@pytest.mark.parametrize(("profile", "forwarded"), [("low", True), ("high", False)])
def test_forwarded_traffic_is_dropped_and_counted_in_high_only(
    net: Lab, tmp_path: Path, profile: str, forwarded: bool
) -> None:
    # The stranger reaches the peer's eth1 address through the VM, which routes eth0 -> eth1.
    net.vm.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    net.stranger.run(["ip", "route", "add", "10.78.0.2/32", "via", net.vm4])
    for key in ("all", "eth1"):  # the peer gets it on eth1 but would answer through eth0
        net.peer.run(["sysctl", "-qw", f"net.ipv4.conf.{key}.rp_filter=0"])
    applier = apply(net.vm, tmp_path, PERSONA.format(profile=profile), net.facts())
    probe = {"id": "fwd", "proto": "udp", "dst": "10.78.0.2", "port": PORT, "count": COUNT}
    with listening(net.peer, udp=[PORT]) as listener:
        send_probes(net.stranger, [probe])
        arrived = [r for r in listener.records() if r.get("token", "").startswith("fwd/")]
    assert len(arrived) == (COUNT if forwarded else 0)
    counters = drops(applier)
    assert counters["drop_forward"] == (0 if forwarded else COUNT), counters
    assert counters["drop_rpf"] == 0
    applier.remove()
