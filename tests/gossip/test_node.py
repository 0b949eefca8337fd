"""The protocol core, driven by hand: learning, changes, rejects, bounds and limits."""

from __future__ import annotations

from ipaddress import ip_address

from hypothesis import given, settings
from hypothesis import strategies as st

from netpersona.certs import Accepted
from netpersona.compiler import resolve_peer_sets
from netpersona.facts import HostFacts
from netpersona.gossip import GossipConfig, GossipNode, Step, encode
from netpersona.gossip.wire import Certs, Digest, Want, decode, instance_key
from netpersona.model import parse_persona
from netpersona.testing.certs import NOW, fixed_key, make_certificate, signed
from tests.gossip.network import CONFIG, Network

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"


def three_nodes(config: GossipConfig = CONFIG) -> Network:
    net = Network(config)
    net.add("vm-a", A, seeds=(B,), persona="restricted-db")
    net.add("vm-b", B, persona="api")
    net.add("vm-c", C, seeds=(B,), persona="web")
    return net


def test_membership_is_learned_from_one_seed() -> None:
    net = three_nodes()
    net.run(3)
    assert net.view(A) == {"vm-b": "api", "vm-c": "web"}
    assert net.view(C) == {"vm-a": "restricted-db", "vm-b": "api"}
    assert net.view(B) == {"vm-a": "restricted-db", "vm-c": "web"}
    # By default every certificate came from its owner: B told A of C, C handed it over.
    # (A duplicate is the same certificate twice: introductions may cross.)
    rejects = [n for node in net.nodes.values() for n, count in node.counters.items() if count]
    assert [n for n in rejects if n.startswith("reject_") and n != "reject_duplicate"] == []


def test_a_persona_change_reaches_every_peer_and_is_reported() -> None:
    net = three_nodes()
    net.run(3)
    b = net.nodes[ip_address(B)]
    b.set_own_certificate(net.token("vm-b", B, persona="web", seq=2), net.now)
    net.learned.clear()
    net.run(2)
    assert net.view(A)["vm-b"] == "web"
    assert net.view(C)["vm-b"] == "web"
    assert sorted(net.learned) == [(ip_address(A), "vm-b=web"), (ip_address(C), "vm-b=web")]


def test_by_default_news_is_taken_only_from_its_owner() -> None:
    net = three_nodes()
    net.run(3)
    # A and C stop hearing each other directly: B tells A of C's news, but only C may hand
    # over C's certificate (spec section 8), so A keeps what C last told it.
    a, c = net.nodes[ip_address(A)], net.nodes[ip_address(C)]
    net.blocked.add(frozenset((a.address, c.address)))
    c.set_own_certificate(net.token("vm-c", C, persona="api", seq=2), net.now)
    net.run(3)
    assert net.view(A)["vm-c"] == "web"
    assert net.view(B)["vm-c"] == "api"
    # Once A can hear C again, the pending ask is answered by C itself.
    net.blocked.clear()
    net.run(8)
    assert net.view(A)["vm-c"] == "api"
    assert a.counters["reject_wrong_source"] == 0


def test_relaying_when_enabled_reaches_a_node_that_cannot_hear_the_owner() -> None:
    net = three_nodes(GossipConfig(interval=1.0, push_pull_interval=5.0, relay=True))
    net.run(3)
    # A and C stop hearing each other directly: C's news must come through B.
    a, c = net.nodes[ip_address(A)], net.nodes[ip_address(C)]
    net.blocked.add(frozenset((a.address, c.address)))
    accepted_before = a.counters["accepted"]
    c.set_own_certificate(net.token("vm-c", C, persona="api", seq=2), net.now)
    net.run(3)
    assert net.view(A)["vm-c"] == "api"
    assert a.counters["accepted"] == accepted_before + 1


def certs_to(step: Step) -> list[str]:
    return [str(d.address) for d in step.out if isinstance(decode(d.payload), Certs)]


def test_a_busy_owner_queues_askers_and_serves_them_at_its_cap() -> None:
    # (news_window < 0: the askers' certificates are not rumoured, so only answers go out)
    config = GossipConfig(
        bandwidth=1000, bandwidth_burst=1300, source_rate=100, source_burst=100, news_window=-1
    )
    node = single(config)
    askers = [f"10.0.3.{i}" for i in range(1, 9)]
    sent_to: list[str] = []
    for address in askers:
        token = signed(make_certificate(f"vm-{address}", (address,))).encode()
        step = node.receive(encode(Want((instance_key("vm-a"),), token)), ip_address(address), NOW)
        sent_to += certs_to(step)
    assert 1 <= len(sent_to) < len(askers)  # the burst pays for the first ones only
    for second in range(1, 10):
        sent_to += certs_to(node.tick(NOW + second))
    # Everyone was answered once, in the order asked, none dropped for the cap.
    assert sent_to == askers


def test_an_expired_peer_leaves_the_view_and_is_reported() -> None:
    net = Network()
    net.add("vm-a", A, seeds=(B,))
    net.add("vm-b", B, lifetime=10)
    net.run(3)
    assert "vm-b" in net.view(A)
    expired: list[str] = []
    for _ in range(10):
        for step in net.round():
            expired += step.expired
    assert "vm-b" in expired
    assert "vm-b" not in net.view(A)


def single(config: GossipConfig = CONFIG) -> GossipNode:
    node = GossipNode(address=ip_address(A), verifier=Network().verifier, config=config)
    node.set_own_certificate(signed(make_certificate("vm-a", (A,))), NOW)
    return node


def test_every_reject_is_counted_by_reason() -> None:
    node = single(GossipConfig(relay=True))
    other = fixed_key("k9")
    inputs = {
        "reject_bad_signature": signed(make_certificate("vm-x", (B,)), fixed_key("k1"))[:-4]
        + "AAAA",
        "reject_unknown_key": signed(make_certificate("vm-x", (B,), key=other), other),
        "reject_expired": signed(make_certificate("vm-x", (B,), issued_at=NOW - 7200)),
        "reject_unauthenticated_relay": signed(make_certificate("vm-y", (C,))),  # relay on
        "reject_malformed": "garbage",
    }
    for counter, token in inputs.items():
        node.receive(encode(Certs((token.encode(),))), ip_address(B), NOW)
        assert node.counters[counter] == 1, counter
    node.receive(
        encode(Certs((signed(make_certificate("vm-x", (B,), seq=5)).encode(),))), ip_address(B), NOW
    )
    assert node.counters["accepted"] == 2
    node.receive(
        encode(Certs((signed(make_certificate("vm-x", (B,), seq=4)).encode(),))), ip_address(B), NOW
    )
    assert node.counters["reject_stale"] == 1
    assert [p.instance for p in node.peer_view(NOW)] == ["vm-x"]


def test_strict_mode_refuses_relayed_certificates_as_wrong_source() -> None:
    node = single(GossipConfig(relay=False))
    node.receive(
        encode(Certs((signed(make_certificate("vm-b", (B,))).encode(),))), ip_address(B), NOW
    )
    node.receive(
        encode(Certs((signed(make_certificate("vm-c", (C,))).encode(),))), ip_address(B), NOW
    )
    assert node.counters["reject_wrong_source"] == 1
    assert [p.instance for p in node.peer_view(NOW)] == ["vm-b"]


def test_state_is_bounded_by_max_certs() -> None:
    node = single(GossipConfig(max_certs=4))
    for i in range(10):
        address = f"10.0.1.{i}"
        token = signed(make_certificate(f"vm-{i}", (address,)))
        node.receive(encode(Certs((token.encode(),))), ip_address(address), NOW)
    assert len(node.store) == 4
    assert len(node.peer_view(NOW)) == 3
    assert node.counters["drop_state_full"] == 7


def test_per_source_rate_limit() -> None:
    node = single(GossipConfig(source_rate=10, source_burst=20))
    for _ in range(50):
        node.receive(encode(Digest(())), ip_address(B), NOW)
    assert node.counters["drop_rate_limited"] == 30
    node.receive(encode(Digest(())), ip_address(B), NOW + 1.0)
    node.receive(encode(Digest(())), ip_address(C), NOW)
    assert node.counters["drop_rate_limited"] == 30


def test_bandwidth_cap_bounds_what_is_sent() -> None:
    config = GossipConfig(bandwidth=2000, bandwidth_burst=4000, source_rate=1000, source_burst=1000)
    node = single(config)
    b_token = signed(make_certificate("vm-b", (B,)))
    node.receive(encode(Certs((b_token.encode(),))), ip_address(B), NOW)
    # B keeps asking for A's certificate: what A sends over 10 s stays under burst + rate * t.
    sent = 0
    for i in range(1000):
        step = node.receive(encode(Want((instance_key("vm-a"),))), ip_address(B), NOW + i / 100)
        sent += sum(len(d.payload) + 28 for d in step.out)
    # The cap, not anything else, is what held A back: it sent close to all it allowed.
    assert 0.8 * (4000 + 2000 * 10) < sent <= 4000 + 2000 * 10


def test_wants_from_unauthenticated_sources_get_at_most_one_introduction() -> None:
    node = single(GossipConfig(relay=True))
    node.receive(
        encode(Certs((signed(make_certificate("vm-b", (B,))).encode(),))), ip_address(B), NOW
    )
    # Someone else's certificate: nothing for a sender we do not know.
    step = node.receive(encode(Want((instance_key("vm-b"),))), ip_address(C), NOW)
    assert step.out == ()
    assert node.counters["drop_unauthenticated"] == 1
    # Our own: the introduction, once per interval however often it is asked (no amplifier).
    own = [
        node.receive(encode(Want((instance_key("vm-a"),))), ip_address(C), NOW) for _ in range(5)
    ]
    assert [len(step.out) for step in own] == [1, 0, 0, 0, 0]
    assert isinstance(decode(own[0].out[0].payload), Certs)
    # ... and a sender that shows its own certificate is answered.
    token = signed(make_certificate("vm-c", (C,))).encode()
    step = node.receive(encode(Want((instance_key("vm-b"),), token)), ip_address(C), NOW)
    assert any(d.address == ip_address(C) and d.payload[3] == 4 for d in step.out)


@settings(max_examples=300)
@given(st.binary(max_size=1400), st.sampled_from([B, C, "fd00::9"]))
def test_no_datagram_raises_or_grows_state(data: bytes, source: str) -> None:
    node = single()
    before = len(node.store)
    step = node.receive(data, ip_address(source), NOW)
    assert len(node.store) == before
    assert len(step.out) <= 1
    dropped = sum(v for k, v in node.counters.items() if k.startswith(("drop_", "reject_")))
    assert dropped <= 1


def test_a_renewal_reaches_every_peer_by_anti_entropy() -> None:
    net = three_nodes()
    net.run(3)
    b = net.nodes[ip_address(B)]
    b.set_own_certificate(net.token("vm-b", B, persona="api", seq=2), net.now)
    net.run(12)
    for address in (A, C):
        held = net.nodes[ip_address(address)].store.get(instance_key("vm-b"))
        assert held is not None
        assert held.seq == 2


TOKENS = [signed(make_certificate(f"vm-{i}", (f"10.0.2.{i}",))).encode() for i in range(3)]
structured = st.one_of(
    st.builds(
        lambda entries: encode(Digest(tuple(entries))),
        st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)), max_size=70),
    ),
    st.builds(
        lambda keys, i: encode(Want(tuple(keys), TOKENS[i] if i < 3 else b"")),
        st.lists(st.integers(0, 2**64 - 1), max_size=50),
        st.integers(0, 3),
    ),
    st.builds(
        lambda picks, cut: encode(Certs(tuple(TOKENS[i][:cut] for i in picks))),
        st.lists(st.integers(0, 2), max_size=2),
        st.integers(0, 500),
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(structured, st.sampled_from(["10.0.2.0", "10.0.2.1", C])), max_size=8))
def test_plausible_datagrams_keep_state_and_output_bounded(
    datagrams: list[tuple[bytes, str]],
) -> None:
    node = single(GossipConfig(max_certs=3))
    for data, source in datagrams:
        step = node.receive(data, ip_address(source), NOW)
        assert len(step.out) <= node.config.max_replies + 1
        assert all(len(d.payload) <= 1200 for d in step.out)
        assert len(node.store) <= 3
    step = node.tick(NOW + 1)
    assert all(len(d.payload) <= 1200 for d in step.out)


def test_the_peer_view_resolves_persona_selectors_after_a_swap() -> None:
    """The acceptance scenario, pure: A (peers: persona api) follows B and C swapping personas."""
    persona = parse_persona(
        {
            "communication_mode": "restricted",
            "security_profile": "high",
            "allowed_protocols": ["postgres"],
            "priority": 2,
            "peers": [{"persona": "api"}],
        }
    )
    net = Network()
    a = net.add("vm-a", A, seeds=(B,), persona="db")
    net.add("vm-b", B, persona="api", priority=6)
    net.add("vm-c", C, seeds=(B,), persona="web", priority=1)
    net.run(3)
    sets = resolve_peer_sets(persona, HostFacts(peers=a.peer_view(net.now)))
    assert sets.addrs_v4 == (B,)
    assert sets.dscp_v4 == ((B, 40),)  # B's priority 6 is above A's 2: CS5 toward B

    net.nodes[ip_address(B)].set_own_certificate(
        net.token("vm-b", B, persona="web", seq=2, priority=6), net.now
    )
    net.nodes[ip_address(C)].set_own_certificate(
        net.token("vm-c", C, persona="api", seq=2, priority=1), net.now
    )
    net.run(2)
    sets = resolve_peer_sets(persona, HostFacts(peers=a.peer_view(net.now)))
    assert sets.addrs_v4 == (C,)


def test_the_own_certificate_fits_a_full_store() -> None:
    node = GossipNode(
        address=ip_address(A), verifier=Network().verifier, config=GossipConfig(max_certs=2)
    )
    for i in range(3):
        address = f"10.0.1.{i}"
        token = signed(make_certificate(f"vm-{i}", (address,)))
        node.receive(encode(Certs((token.encode(),))), ip_address(address), NOW)
    assert len(node.store) == 2
    verdict = node.set_own_certificate(signed(make_certificate("vm-a", (A,))), NOW)
    assert isinstance(verdict, Accepted)
    assert node.own is not None
    assert len(node.store) == 3
