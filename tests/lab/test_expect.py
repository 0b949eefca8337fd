"""The lab's oracle reads the spec: each case is a sentence of spec sections 3-5."""

from __future__ import annotations

from ipaddress import IPv4Interface
from typing import Any

from netpersona.lab.expect import Host, Probe, ProbeKind, expected
from netpersona.model import parse_persona
from netpersona.model.protocols import L4

TCP_5432 = Probe(ProbeKind.TCP_ALLOWED, L4.TCP, 5432)
ICMP = Probe(ProbeKind.ICMP, L4.ICMP)
BROADCAST = Probe(ProbeKind.BROADCAST, L4.UDP, 6000)


def host(
    name: str,
    address: str,
    persona_name: str | None = None,
    labels: dict[str, str] | None = None,
    **fields: Any,
) -> Host:
    body = {
        "communication_mode": "unicast",
        "security_profile": "medium",
        "allowed_protocols": ["icmp"],
        "priority": 3,
    }
    body.update(fields)
    return Host(
        name,
        persona_name,
        parse_persona(body),
        (IPv4Interface(f"{address}/24"),),
        labels or {},
    )


def test_restricted_database_is_reachable_only_from_the_api_persona() -> None:
    db = host(
        "db",
        "10.0.0.30",
        "db",
        communication_mode="restricted",
        security_profile="high",
        allowed_protocols=["postgres", "icmp"],
        peers=[{"persona": "api"}],
    )
    api = host(
        "api", "10.0.0.20", "api", allowed_protocols=["postgres", "icmp"], security_profile="low"
    )
    web = host(
        "web", "10.0.0.10", "web", allowed_protocols=["postgres", "icmp"], security_profile="low"
    )
    assert expected(api, db, TCP_5432)
    assert not expected(web, db, TCP_5432)
    # Restricted: outbound only to permitted peers, whatever the profile.
    assert expected(db, api, ICMP)
    assert not expected(db, web, ICMP)


def test_inbound_needs_the_protocol_in_every_profile() -> None:
    low = host("a", "10.0.0.1", security_profile="low", allowed_protocols=["ssh"])
    other = host("b", "10.0.0.2", security_profile="low", allowed_protocols=["ssh"])
    assert not expected(other, low, ICMP)
    assert expected(other, low, Probe(ProbeKind.TCP_ALLOWED, L4.TCP, 22))


def test_medium_sends_only_its_protocols_low_sends_anything() -> None:
    target = host("t", "10.0.0.9", allowed_protocols=["postgres"], security_profile="low")
    medium = host("m", "10.0.0.1", allowed_protocols=["icmp"])
    low = host("l", "10.0.0.2", allowed_protocols=["icmp"], security_profile="low")
    assert not expected(medium, target, TCP_5432)
    assert expected(low, target, TCP_5432)


def test_high_talks_only_within_its_subnets_without_peers() -> None:
    high = host("h", "10.0.0.1", security_profile="high", allowed_protocols=["icmp"])
    near = host("n", "10.0.0.2", security_profile="low")
    far = host("f", "10.9.0.2", security_profile="low")
    assert expected(near, high, ICMP)
    assert not expected(far, high, ICMP)
    assert not expected(high, far, ICMP)


def test_broadcast_only_between_broadcast_personas_for_their_protocols() -> None:
    a = host("a", "10.0.0.1", communication_mode="broadcast", allowed_protocols=["udp/6000"])
    b = host("b", "10.0.0.2", communication_mode="broadcast", allowed_protocols=["udp/6000"])
    u = host("u", "10.0.0.3", allowed_protocols=["udp/6000"])
    assert expected(a, b, BROADCAST)
    assert not expected(a, u, BROADCAST)
    assert not expected(u, a, BROADCAST)


def test_multicast_only_to_listed_groups() -> None:
    kw: dict[str, Any] = {
        "communication_mode": "multicast",
        "allowed_protocols": ["udp/5004"],
        "multicast_groups": ["239.1.1.1"],
    }
    a, b = host("a", "10.0.0.1", **kw), host("b", "10.0.0.2", **kw)
    listed = Probe(ProbeKind.MULTICAST_LISTED, L4.UDP, 5004, "239.1.1.1")
    unlisted = Probe(ProbeKind.MULTICAST_UNLISTED, L4.UDP, 5004, "239.9.9.9")
    assert expected(a, b, listed)
    assert not expected(a, b, unlisted)
    assert not expected(host("u", "10.0.0.3", allowed_protocols=["udp/5004"]), b, listed)
