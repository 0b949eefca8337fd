"""The engine answers yes or no with the persona, field, rule and drop counter that decided."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from typing import Any

import pytest

from netpersona.errors import InvalidDocument
from netpersona.model import parse_persona
from netpersona.model.protocols import L4, PortRange
from netpersona.reachability import (
    Endpoint,
    Traffic,
    Via,
    can_reach,
    connectivity_changes,
    matrix,
    service_named,
    service_verdict,
    services_of,
)

POSTGRES = Traffic(L4.TCP, PortRange(5432, 5432))


def vm(
    name: str,
    address: str,
    persona_name: str | None = None,
    labels: dict[str, str] | None = None,
    **fields: Any,
) -> Endpoint:
    body = {
        "communication_mode": "unicast",
        "security_profile": "medium",
        "allowed_protocols": ["icmp"],
        "priority": 3,
        **fields,
    }
    return Endpoint(
        name,
        persona_name,
        parse_persona(body) if persona_name else None,
        (IPv4Interface(f"{address}/24"),),
        labels or {},
    )


def db(persona_peer: str = "api") -> Endpoint:
    return vm(
        "db-1",
        "10.0.0.30",
        "db",
        communication_mode="restricted",
        security_profile="high",
        allowed_protocols=["postgres", "icmp"],
        peers=[{"persona": persona_peer}],
    )


def api(
    name: str = "api-1", persona: str = "api", labels: dict[str, str] | None = None
) -> Endpoint:
    return vm(name, "10.0.0.20", persona, labels, allowed_protocols=["postgres", "https", "icmp"])


def test_a_permitted_peer_reaches_the_database_and_the_verdict_says_why() -> None:
    verdict = can_reach(api(), db(), POSTGRES)
    assert verdict.reachable
    assert verdict.ports == (PortRange(5432, 5432),)
    assert [(r.vm, r.side, r.field) for r in verdict.reasons] == [
        ("api-1", "out", "allowed_protocols"),
        ("db-1", "in", "peers"),
        ("db-1", "in", "allowed_protocols"),
    ]
    assert "peers: persona api" in verdict.reasons[1].rule


def test_a_stranger_is_dropped_by_the_receivers_peers_with_drop_not_peer() -> None:
    verdict = can_reach(api("web-1", "web"), db(), POSTGRES)
    assert not verdict.reachable
    decisive = verdict.decisive
    assert decisive is not None
    assert (decisive.vm, decisive.side, decisive.persona, decisive.field, decisive.counter) == (
        "db-1",
        "in",
        "db",
        "peers",
        "drop_not_peer",
    )
    assert "web-1 cannot reach db-1 with tcp/5432" in verdict.summary()


def test_a_protocol_outside_both_lists_is_drop_protocol_on_the_sender_first() -> None:
    verdict = can_reach(api(), db(), Traffic(L4.UDP, PortRange(53, 53)))
    assert verdict.decisive is not None
    assert (verdict.decisive.vm, verdict.decisive.counter) == ("api-1", "drop_protocol")


def test_restricted_sends_only_to_permitted_peers_whatever_the_profile() -> None:
    verdict = can_reach(db(), api("web-1", "web"), Traffic(L4.ICMP))
    assert verdict.decisive is not None
    assert (verdict.decisive.vm, verdict.decisive.side, verdict.decisive.counter) == (
        "db-1",
        "out",
        "drop_not_peer",
    )
    assert can_reach(db(), api(), Traffic(L4.ICMP)).reachable


def test_ports_that_get_through_are_the_intersection_of_both_sides() -> None:
    a = vm("a", "10.0.0.1", "a", allowed_protocols=["tcp/20-30"])
    b = vm("b", "10.0.0.2", "b", allowed_protocols=["tcp/25-40"])
    verdict = can_reach(a, b, Traffic(L4.TCP))
    assert verdict.reachable
    assert verdict.ports == (PortRange(25, 30),)
    c = vm("c", "10.0.0.3", "c", allowed_protocols=["tcp/80"])
    assert not can_reach(a, c, Traffic(L4.TCP)).reachable  # each allows tcp, no common port


def test_broadcast_needs_broadcast_mode_on_both_sides_and_one_segment() -> None:
    kw: dict[str, Any] = {"communication_mode": "broadcast", "allowed_protocols": ["udp/6000"]}
    a, b = vm("a", "10.0.0.1", "d", **kw), vm("b", "10.0.0.2", "d", **kw)
    far = vm("f", "10.9.0.2", "d", **kw)
    unicast = vm("u", "10.0.0.3", "u", allowed_protocols=["udp/6000"])
    traffic = Traffic(L4.UDP, PortRange(6000, 6000), Via.BROADCAST)
    assert can_reach(a, b, traffic).reachable
    assert not can_reach(a, far, traffic).reachable
    dropped = can_reach(a, unicast, traffic).decisive
    assert dropped is not None
    assert (dropped.vm, dropped.field, dropped.counter) == (
        "u",
        "communication_mode",
        "drop_broadcast",
    )


def test_multicast_only_to_a_listed_group_with_drop_multicast() -> None:
    kw: dict[str, Any] = {
        "communication_mode": "multicast",
        "allowed_protocols": ["udp/5004"],
        "multicast_groups": ["239.1.1.1"],
    }
    a, b = vm("a", "10.0.0.1", "m", **kw), vm("b", "10.0.0.2", "m", **kw)
    port = PortRange(5004, 5004)
    assert can_reach(a, b, Traffic(L4.UDP, port, Via.MULTICAST, IPv4Address("239.1.1.1"))).reachable
    other = can_reach(a, b, Traffic(L4.UDP, port, Via.MULTICAST, IPv4Address("239.9.9.9")))
    assert other.decisive is not None
    assert (other.decisive.field, other.decisive.counter) == ("multicast_groups", "drop_multicast")


def test_no_persona_is_unfiltered() -> None:
    assert can_reach(vm("a", "10.0.0.1"), vm("b", "10.0.0.2"), POSTGRES).reachable


def test_services_are_the_entries_the_personas_name_plus_icmp() -> None:
    names = [s.name for s in services_of([api(), db(), vm("x", "10.0.0.9")])]
    assert names == ["https", "icmp", "postgres"]
    dns = service_named("dns")
    assert len(dns.rules) == 2
    kw: dict[str, Any] = {"allowed_protocols": ["udp/6000"], "multicast_groups": ["239.1.1.1"]}
    group = vm("g", "10.0.0.7", "g", communication_mode="multicast", **kw)
    names = [s.name for s in services_of([group])]
    assert names == ["icmp", "udp/6000", "udp/6000 to 239.1.1.1"]
    assert service_named("udp/6000 to 239.1.1.1").via is Via.MULTICAST
    assert service_named("udp/6000 broadcast").via is Via.BROADCAST
    kw = {"communication_mode": "broadcast", "allowed_protocols": ["dns", "ssh", "icmp"]}
    names = [s.name for s in services_of([vm("b", "10.0.0.8", "b", **kw)])]
    assert names == ["dns", "icmp", "ssh", "dns broadcast", "icmp broadcast"]
    dns_broadcast = next(
        s for s in services_of([vm("b", "10.0.0.8", "b", **kw)]) if s.name == "dns broadcast"
    )
    assert [str(r) for r in dns_broadcast.rules] == ["udp/53"]
    with pytest.raises(InvalidDocument) as caught:
        service_named("tcp/99999")
    assert caught.value.errors[0].pointer == "/proto"


def test_a_service_is_reachable_when_any_of_its_rules_is() -> None:
    a = vm("a", "10.0.0.1", "a", allowed_protocols=["tcp/53"])
    b = vm("b", "10.0.0.2", "b", allowed_protocols=["dns"])
    assert service_verdict(a, b, service_named("dns")).reachable
    cells = matrix([a, b], [service_named("dns"), service_named("icmp")])
    assert cells[("a", "b", "dns")].reachable
    assert cells[("b", "a", "dns")].traffic.l4 is L4.TCP  # udp/53 is not in a's list
    assert not cells[("a", "b", "icmp")].reachable
    c = vm("c", "10.0.0.3", "c", allowed_protocols=["udp/5353"])
    assert not service_verdict(b, c, service_named("dns")).reachable


def test_a_label_change_moves_the_pairs_of_the_peers_that_selected_it() -> None:
    """`--label api-1:app=web` on a persona-by-label fleet: db-1's allowlist loses api-1."""
    before = {"api-1": api(), "db-1": db(), "web-1": api("web-1", "web")}
    after = {**before, "api-1": api(persona="web")}
    changes = connectivity_changes(before, after)
    lost = {(c.src, c.dst, c.service) for c in changes if not c.gained}
    assert ("api-1", "db-1", "postgres") in lost
    assert ("db-1", "api-1", "icmp") in lost
    assert all(c.src == "api-1" or c.dst == "api-1" for c in changes)
    assert not [c for c in changes if c.gained]
    line = next(c.line() for c in changes if c.service == "postgres")
    assert "loses" in line
    assert "drop_not_peer" in line


def test_an_unchanged_fleet_moves_nothing() -> None:
    fleet = {"api-1": api(), "db-1": db()}
    assert connectivity_changes(fleet, dict(fleet)) == []
