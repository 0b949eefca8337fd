"""The probe tool tells delivered from dropped, for every kind of probe, with real sockets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from netpersona.probe.runner import listening, send_probes
from netpersona.testing.topology import Lab, lab

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def net() -> Iterator[Lab]:
    with lab() as built:
        yield built


def _suite(net: Lab) -> tuple[dict[str, dict[str, object]], set[str]]:
    probes: list[dict[str, object]] = [
        {"id": "tcp", "proto": "tcp", "dst": net.vm4, "port": 5432, "timeout": 0.5},
        {"id": "tcp6", "proto": "tcp", "dst": net.vm6, "port": 5432, "timeout": 0.5},
        {"id": "udp", "proto": "udp", "dst": net.vm4, "port": 5000},
        {"id": "icmp", "proto": "icmp", "dst": net.vm4, "timeout": 0.5},
        {"id": "icmp6", "proto": "icmp", "dst": net.vm6, "timeout": 0.5},
        {"id": "bcast", "proto": "udp", "dst": net.broadcast4, "port": 5000, "broadcast": True},
        {"id": "mcast", "proto": "udp", "dst": "239.1.1.1", "port": 5001, "ifname": "eth0"},
    ]
    with listening(
        net.vm, tcp=[5432], udp=[5000], groups=["239.1.1.1:5001"], ifname="eth0"
    ) as listener:
        results = send_probes(net.peer, probes)
        records = listener.records()
    arrived = {r["token"].rsplit("/", 1)[0] for r in records if "token" in r}
    dscp = {r["token"].rsplit("/", 1)[0]: r.get("dscp") for r in records if "token" in r}
    assert dscp.get("udp") in (None, 0, 46)
    return results, arrived


def test_without_a_firewall_every_probe_is_delivered(net: Lab) -> None:
    results, arrived = _suite(net)
    assert all(r["ok"] for r in results.values()), results
    assert {"tcp", "tcp6", "udp", "bcast", "mcast"} <= arrived


def test_dropped_probes_are_reported_as_not_delivered(net: Lab) -> None:
    net.vm.run(
        ["nft", "-f", "-"],
        input="table inet t {\n chain in { type filter hook input priority 0;\n"
        "  udp dport 5001 drop\n  ip protocol icmp drop\n  meta nfproto ipv4 tcp dport 5432 drop\n"
        "  ip daddr 10.77.0.255 drop\n }\n}\n",
    )
    try:
        results, arrived = _suite(net)
    finally:
        net.vm.run(["nft", "delete", "table", "inet", "t"])
    assert not results["tcp"]["ok"]
    assert not results["icmp"]["ok"]
    assert results["tcp6"]["ok"]  # IPv4-only rules: IPv6 still passes
    assert results["icmp6"]["ok"]
    assert "udp" in arrived
    assert "bcast" not in arrived
    assert "mcast" not in arrived


def test_the_listener_reports_the_dscp_a_packet_arrived_with(net: Lab) -> None:
    net.peer.run(
        ["nft", "-f", "-"],
        input="table inet tos {\n chain out { type filter hook output priority 0;\n"
        "  ip dscp set ef\n }\n}\n",
    )
    try:
        with listening(net.vm, udp=[5000]) as listener:
            send_probes(net.peer, [{"id": "u", "proto": "udp", "dst": net.vm4, "port": 5000}])
            records = listener.records()
    finally:
        net.peer.run(["nft", "delete", "table", "inet", "tos"])
    assert [r["dscp"] for r in records if r.get("token", "").startswith("u/")] == [46]
