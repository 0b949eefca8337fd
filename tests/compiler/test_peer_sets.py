"""The peer sets are what a from-scratch resolution by parsed addresses gives, byte for byte."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

from hypothesis import given, settings
from hypothesis import strategies as st

from netpersona.compiler import compile_plan, resolve_peer_sets
from netpersona.compiler.peers import peer_dscp, selects
from netpersona.compiler.plan import PeerSets
from netpersona.facts import HostFacts
from netpersona.model import parse_persona_text
from netpersona.model.persona import Persona
from netpersona.records import Peer

PERSONA = parse_persona_text(
    """
network_persona:
  communication_mode: restricted
  security_profile: high
  allowed_protocols: [postgres, icmp]
  priority: 2
  peers: [{persona: api}, {labels: {team: db}}]
"""
)


def reference(persona: Persona, facts: HostFacts) -> PeerSets:
    """The resolution as first written: every address as text, sorted by its parsed value."""
    addrs: dict[int, set[str]] = {4: set(), 6: set()}
    dscp: dict[int, dict[str, tuple[int, int]]] = {4: {}, 6: {}}
    for peer in facts.peers:
        chosen = selects(persona, peer)
        for address in peer.addresses:
            if chosen:
                addrs[address.version].add(str(address))
            if peer.priority > persona.priority:
                held = dscp[address.version].get(str(address))
                candidate = (peer.priority, peer_dscp(peer))
                if held is None or candidate > held:
                    dscp[address.version][str(address)] = candidate

    def ordered(texts: object) -> tuple[str, ...]:
        return tuple(sorted(texts, key=lambda a: int(ip_address(a))))  # type: ignore[call-overload]

    return PeerSets(
        addrs_v4=ordered(addrs[4]),
        addrs_v6=ordered(addrs[6]),
        dscp_v4=tuple((a, dscp[4][a][1]) for a in ordered(dscp[4])),
        dscp_v6=tuple((a, dscp[6][a][1]) for a in ordered(dscp[6])),
    )


# Few distinct addresses, so that peers share them; the ends of both families included.
V4 = st.one_of(
    st.sampled_from([0, 1, 2**32 - 1, int(IPv4Address("10.0.0.1")), 0x0A000100]),
    st.integers(0, 2**32 - 1),
).map(IPv4Address)
V6 = st.one_of(
    st.sampled_from(
        [0, 1, 2**128 - 1, int(IPv6Address("::ffff:1.2.3.4")), int(IPv6Address("fd00::1"))]
    ),
    st.integers(0, 2**128 - 1),
).map(IPv6Address)
PEERS = st.lists(
    st.builds(
        Peer,
        instance=st.text("abc", min_size=1, max_size=3),
        addresses=st.lists(st.one_of(V4, V6), max_size=4).map(tuple),
        persona=st.sampled_from([None, "api", "web"]),
        priority=st.integers(0, 5),
        dscp=st.sampled_from([None, 0, 10, 46, 63, 99]),
        labels=st.sampled_from([(), (("team", "db"),), (("team", "web"),)]),
    ),
    max_size=25,
).map(tuple)


@settings(max_examples=300, deadline=None)
@given(PEERS)
def test_peer_sets_equal_the_reference(peers: tuple[Peer, ...]) -> None:
    facts = HostFacts(peers=peers)
    assert resolve_peer_sets(PERSONA, facts) == reference(PERSONA, facts)


@settings(max_examples=100, deadline=None)
@given(PEERS, PEERS)
def test_a_peer_change_compiles_to_the_plan_of_the_whole_view(
    before: tuple[Peer, ...], joined: tuple[Peer, ...]
) -> None:
    # The plan after a change is the plan compiled from scratch for the changed view: same
    # sets, same digests (what the agent compares to choose an in-place update).
    view = before + joined
    plan = compile_plan(PERSONA, HostFacts(peers=view))
    assert plan.peer_sets == reference(PERSONA, HostFacts(peers=view))
    assert plan.digest == compile_plan(PERSONA, HostFacts(peers=tuple(reversed(view)))).digest
    assert plan.ruleset_digest == compile_plan(PERSONA, HostFacts(peers=before)).ruleset_digest


def test_many_ipv4_addresses_in_numeric_order() -> None:
    peers = tuple(
        Peer(f"vm-{i}", (IPv4Address(value),), persona="api", priority=3)
        for i, value in enumerate([2**32 - 1, 0x0A000002, 0x0A00000A, 0, 0x0A000002])
    )
    sets = resolve_peer_sets(PERSONA, HostFacts(peers=peers))
    assert sets.addrs_v4 == ("0.0.0.0", "10.0.0.2", "10.0.0.10", "255.255.255.255")
    assert [a for a, _ in sets.dscp_v4] == list(sets.addrs_v4)
