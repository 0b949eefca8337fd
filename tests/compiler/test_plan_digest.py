"""A plan's digest is the SHA-256 of its canonical JSON, however the text is put together."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from netpersona.compiler import compile_plan
from netpersona.compiler.plan import PeerSets, Plan
from netpersona.facts import HostFacts
from tests.compiler.test_peer_sets import PEERS, PERSONA


def _canonical_digest(plan: Plan) -> str:
    text = json.dumps(plan.to_json(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


TEXTS = st.lists(
    st.one_of(
        st.sampled_from(["10.0.0.1", "fd00::1", "fe80::1%eth0", 'a"b', "c\\d", "é", "\x00"]),
        st.text(max_size=6),
    ),
    max_size=6,
).map(tuple)


@settings(max_examples=200, deadline=None)
@given(PEERS, TEXTS, TEXTS, st.lists(st.tuples(st.text(max_size=4), st.integers(0, 63))))
def test_the_digest_is_the_hash_of_the_canonical_text(
    peers: object, v4: tuple[str, ...], v6: tuple[str, ...], dscp: list[tuple[str, int]]
) -> None:
    plan = compile_plan(PERSONA, HostFacts(peers=peers))  # type: ignore[arg-type]
    assert plan.digest == _canonical_digest(plan)
    assert plan.ruleset_digest == compile_plan(PERSONA, HostFacts()).ruleset_digest
    odd = replace(plan, peer_sets=PeerSets(v4, v6, tuple(dscp), tuple(reversed(dscp))))
    assert odd.digest == _canonical_digest(odd)
    # A plan that holds the text standing in for the peer sets is hashed the long way.
    marked = replace(odd, nftables=({"comment": "\x00peer-sets\x00"}, *odd.nftables))
    assert marked.digest == _canonical_digest(marked)
