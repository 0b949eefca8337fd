"""The incremental compiler gives what a compile from scratch gives, after any change."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from netpersona.compiler import compile_plan
from netpersona.compiler.incremental import PeerResolver, PlanCompiler
from netpersona.compiler.peer_delta import peer_delta
from netpersona.facts import HostFacts
from netpersona.model import parse_persona_text
from netpersona.records import Peer
from tests.compiler.test_peer_sets import PEERS, PERSONA

OTHER = parse_persona_text(
    """
network_persona:
  communication_mode: restricted
  security_profile: high
  allowed_protocols: [ssh]
  priority: 4
  peers: [{persona: web}]
"""
)


def _normal(delta: object) -> object:
    """A delta without its empty fields (peer_delta may name a field with nothing in it)."""
    return {k: v for k, v in delta.to_json().items() if v["delete"] or v["add"]}  # type: ignore[attr-defined]


# A change of the view: entries dropped, entries added, entries kept but changed, the order
# shuffled; views as the agent has them (sorted by instance id) or in any order.
@st.composite
def _changes(draw: st.DrawFn) -> tuple[tuple[Peer, ...], tuple[Peer, ...]]:
    before = draw(PEERS)
    kept = [p for p in before if draw(st.booleans())]
    changed = [
        replace(p, priority=draw(st.integers(0, 5)), dscp=draw(st.sampled_from([None, 10, 46])))
        for p in before
        if draw(st.integers(0, 4)) == 0
    ]
    after = kept + changed + list(draw(PEERS))
    if draw(st.booleans()):
        after = sorted(after, key=lambda p: p.instance)
    else:
        after = draw(st.permutations(after))
    return before, tuple(after)


@settings(max_examples=300, deadline=None)
@given(st.lists(_changes(), min_size=1, max_size=4))
def test_a_chain_of_view_changes_compiles_to_the_plans_from_scratch(
    changes: list[tuple[tuple[Peer, ...], tuple[Peer, ...]]],
) -> None:
    compiler = PlanCompiler()
    views = [changes[0][0]] + [after for _, after in changes]
    previous = None
    for view in views:
        facts = HostFacts(peers=view)
        compiled = compiler.compile(PERSONA, facts)
        scratch = compile_plan(PERSONA, facts)
        assert compiled.plan == scratch
        assert compiled.plan.digest == scratch.digest
        if previous is None:
            assert compiled.peer_change is None
        else:
            change = compiled.peer_change
            assert change is not None
            assert change.before == previous.peer_sets
            assert change.after == scratch.peer_sets
            # The delta is what the whole-set comparison finds.
            assert _normal(change.delta) == _normal(peer_delta(previous.peer_sets, change.after))
        previous = compiled.plan


@settings(max_examples=100, deadline=None)
@given(PEERS, PEERS)
def test_anything_but_the_view_changing_compiles_from_scratch(
    before: tuple[Peer, ...], after: tuple[Peer, ...]
) -> None:
    compiler = PlanCompiler()
    compiler.compile(PERSONA, HostFacts(peers=before))
    other_persona = compiler.compile(OTHER, HostFacts(peers=after))
    assert other_persona.peer_change is None
    assert other_persona.plan == compile_plan(OTHER, HostFacts(peers=after))
    moved = HostFacts(peers=after, control_port=8443)
    other_host = compiler.compile(OTHER, moved)
    assert other_host.peer_change is None
    assert other_host.plan == compile_plan(OTHER, moved)


def test_one_join_in_a_large_view_touches_one_entry() -> None:
    base = tuple(
        Peer(f"vm-{i:06d}", (IPv4Address(0x0A800000 + i),), persona="api", priority=1)
        for i in range(0, 20000, 2)
    )
    resolver = PeerResolver(PERSONA, base)
    joined = Peer("vm-000101", (IPv4Address(0x0A800000 + 101),), persona="api", priority=1)
    view = tuple(sorted((*base, joined), key=lambda p: p.instance))
    change = resolver.update(view)
    assert change.delta.added == {"addrs_v4": ("10.128.0.101",)}
    assert change.delta.deleted == {"addrs_v4": ()}
    assert change.after.addrs_v4[51] == "10.128.0.101"
    # The elements not changed are the same objects: a later comparison is cheap.
    assert change.after.addrs_v4[0] is change.before.addrs_v4[0]
    assert resolver.update(base).delta.deleted == {"addrs_v4": ("10.128.0.101",)}
