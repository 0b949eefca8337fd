"""Comparing fleets class by class gives exactly the pairs that comparing every pair gives."""

from __future__ import annotations

from ipaddress import IPv4Interface
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from netpersona.model import Persona, parse_persona
from netpersona.reachability import Endpoint, connectivity_changes, service_verdict, services_of
from netpersona.reachability.fleet import connectivity_diff

BODIES: list[dict[str, Any]] = [
    {"communication_mode": "unicast", "security_profile": "low", "allowed_protocols": ["ssh"]},
    {"communication_mode": "unicast", "security_profile": "high", "allowed_protocols": ["icmp"]},
    {
        "communication_mode": "restricted",
        "security_profile": "medium",
        "allowed_protocols": ["postgres", "icmp"],
        "peers": [{"persona": "p0"}, {"labels": {"app": "b"}}],
    },
    {
        "communication_mode": "broadcast",
        "security_profile": "medium",
        "allowed_protocols": ["udp/6000", "icmp"],
    },
    {
        "communication_mode": "multicast",
        "security_profile": "low",
        "allowed_protocols": ["udp/5004"],
        "multicast_groups": ["239.1.1.1"],
        "peers": [{"cidr": "10.0.0.0/28"}],
    },
]
PERSONAS: list[Persona] = [parse_persona({**b, "priority": 3}) for b in BODIES]

endpoint_facts = st.tuples(
    st.integers(0, len(PERSONAS)),  # len: no persona
    st.sampled_from(["a", "b"]),
    st.sampled_from(["10.0.0.", "10.0.1."]),
    st.integers(2, 40),
    st.sampled_from(["z1", "z2"]),  # a label no selector reads
)


Facts = tuple[int, str, str, int, str]


def fleet(facts: list[Facts]) -> dict[str, Endpoint]:
    result = {}
    for n, (persona, app, net, host, zone) in enumerate(facts):
        result[f"vm{n}"] = Endpoint(
            f"vm{n}",
            None if persona == len(PERSONAS) else f"p{persona}",
            None if persona == len(PERSONAS) else PERSONAS[persona],
            (IPv4Interface(f"{net}{host}/24"),),
            {"app": app, "zone": zone},
        )
    return result


def every_pair(
    before: dict[str, Endpoint], after: dict[str, Endpoint]
) -> set[tuple[str, str, str, str]]:
    services = services_of([*before.values(), *after.values()])
    found = set()
    for a, sender in before.items():
        for b, receiver in before.items():
            if a == b:
                continue
            for s in services:
                old = service_verdict(sender, receiver, s).reachable
                new = service_verdict(after[a], after[b], s).reachable
                if old != new:
                    found.add((a, b, s.name, "gained" if new else "lost"))
    return found


@settings(max_examples=60, deadline=None)
@given(
    st.lists(endpoint_facts, min_size=2, max_size=6),
    st.lists(st.tuples(st.integers(0, 5), endpoint_facts), max_size=3),
)
def test_class_by_class_equals_pair_by_pair(
    facts: list[Facts], edits: list[tuple[int, Facts]]
) -> None:
    changed = list(facts)
    for index, new in edits:
        changed[index % len(changed)] = new
    before, after = fleet(facts), fleet(changed)
    got = {
        (c.src, c.dst, c.service, "gained" if c.gained else "lost")
        for c in connectivity_changes(before, after)
    }
    assert got == every_pair(before, after)


def test_a_limit_lists_the_first_changes_and_counts_them_all() -> None:
    facts = [(1, "a", "10.0.0.", n, "z1") for n in range(2, 12)]
    before, after = fleet(facts), fleet([(0, "a", "10.0.0.", n, "z1") for n in range(2, 12)])
    everything = connectivity_changes(before, after)
    shown, total = connectivity_diff(before, after, limit=5)
    assert total == len(everything) > 5
    assert [(c.src, c.dst, c.service) for c in shown] == [
        (c.src, c.dst, c.service) for c in everything[:5]
    ]
