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
    # (A duplicate is the same certificate twice: pushes and answers may cross.)
    rejects = [n for node in net.nodes.values() for n, count in node.counters.items() if count]
    assert [n for n in rejects if n.startswith("reject_") and n != "reject_duplicate"] == []


def test_a_persona_change_is_pushed_to_every_peer_at_once_and_reported() -> None:
    net = three_nodes()
    net.run(3)
    net.learned.clear()
    # No gossip round runs: the push alone carries the change.
    net.change(B, "vm-b", persona="web", seq=2)
    assert net.view(A)["vm-b"] == "web"
    assert net.view(C)["vm-b"] == "web"
    assert sorted(net.learned) == [(ip_address(A), "vm-b=web"), (ip_address(C), "vm-b=web")]


def settled(count: int) -> Network:
    net = Network()
    addresses = [f"10.0.4.{i}" for i in range(1, count + 1)]
    for i, address in enumerate(addresses):
        net.add(f"vm-{i}", address, seeds=tuple(a for a in addresses if a != address))
    # A fleet starting at once is paced by the bandwidth cap: each VM must receive every
    # other certificate (~460 bytes each) at about 2 kB/s a sender.
    for _ in range(40):
        if all(len(net.view(a)) == count - 1 for a in addresses):
            return net
        net.round()
    raise AssertionError("the fleet did not settle in 40 rounds")


def test_without_loss_pushes_alone_reach_every_vm_before_any_round() -> None:
    net = settled(30)
    for origin in (0, 11, 29):
        address = f"10.0.4.{origin + 1}"
        net.run(3)  # idle rounds: every bandwidth bucket is full again
        net.learned.clear()
        pushed = net.change(address, f"vm-{origin}", persona="web", seq=origin + 2)
        # The origin sends `fanout` certificates, and every node that learns it does the same
        # (its successor in key order among them), so no VM is left for the rumour rounds.
        assert len(pushed) == 3
        assert sorted(str(a) for a, _ in net.learned) == sorted(
            f"10.0.4.{i}" for i in range(1, 31) if i != origin + 1
        )


def test_a_certificate_relayed_from_a_foreign_address_is_accepted() -> None:
    net = three_nodes()
    net.run(3)
    # A and C stop hearing each other directly: C's change reaches A through B.
    a, c = net.nodes[ip_address(A)], net.nodes[ip_address(C)]
    net.blocked.add(frozenset((a.address, c.address)))
    accepted_before = a.counters["accepted"]
    net.change(C, "vm-c", persona="api", seq=2)
    assert net.view(A)["vm-c"] == "api"
    assert a.counters["accepted"] == accepted_before + 1
    # A uses the address the certificate names, never the sender's.
    [peer] = [p for p in a.peer_view(net.now) if p.instance == "vm-c"]
    assert [str(x) for x in peer.addresses] == [C]


def test_a_stranger_may_hand_over_any_valid_certificate() -> None:
    node = single()
    node.set_seeds([ip_address(B), ip_address("10.0.0.4")])
    # Sent from an address no certificate names, about a VM at another address.
    token = signed(make_certificate("vm-c", (C,), persona="web"))
    step = node.receive(encode(Certs((token.encode(),))), ip_address("192.0.2.99"), NOW)
    assert node.counters["accepted"] == 2  # its own, and this one
    assert [(p.instance, [str(x) for x in p.addresses]) for p in node.peer_view(NOW)] == [
        ("vm-c", [C])
    ]
    # Passed on at once, to neither its owner nor the sender.
    assert sorted(certs_to(step)) == [B, "10.0.0.4"]


def certs_to(step: Step) -> list[str]:
    return [str(d.address) for d in step.out if isinstance(decode(d.payload), Certs)]


def test_a_push_stays_within_the_bandwidth_cap() -> None:
    # Pushes may spend the upper half of the burst, 1000 bytes: room for two certificate
    # datagrams, not three. The third push is refused and counted.
    config = GossipConfig(bandwidth=100, bandwidth_burst=2000)
    node = single(config)
    node.set_seeds(ip_address(f"10.0.5.{i}") for i in range(1, 6))
    node.flush()
    token = signed(make_certificate("vm-b", (B,), persona="web"))
    step = node.receive(encode(Certs((token.encode(),))), ip_address(C), NOW + 10)
    assert [p.instance for p in node.peer_view(NOW)] == ["vm-b"]
    assert certs_to(step) != []
    assert len(certs_to(step)) < 3
    assert node.counters["drop_bandwidth"] == 1
    assert sum(len(d.payload) + 28 for d in step.out) <= 1000
    # What the pushes left is there for answers: a WANT from B is answered.
    step = node.receive(encode(Want((instance_key("vm-b"),))), ip_address(B), NOW + 10)
    assert certs_to(step) == [B]


def test_news_is_pushed_on_but_a_renewal_is_not() -> None:
    node = single()
    node.set_seeds([ip_address(f"10.0.5.{i}") for i in range(1, 6)])
    first = signed(make_certificate("vm-b", (B,), persona="web"))
    assert len(certs_to(node.receive(encode(Certs((first.encode(),))), ip_address(C), NOW))) == 3
    # The same persona re-issued (times and seq only): accepted, left to anti-entropy.
    renewal = signed(
        make_certificate("vm-b", (B,), persona="web", seq=2, persona_version=1, issued_at=NOW + 5)
    )
    step = node.receive(encode(Certs((renewal.encode(),))), ip_address(C), NOW + 5)
    assert step.learned
    assert certs_to(step) == []
    # A real change is news again.
    change = signed(make_certificate("vm-b", (B,), persona="api", seq=3, issued_at=NOW + 6))
    step = node.receive(encode(Certs((change.encode(),))), ip_address(C), NOW + 6)
    assert len(certs_to(step)) == 3


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
    node = single()
    other = fixed_key("k9")
    inputs = {
        "reject_bad_signature": signed(make_certificate("vm-x", (B,)), fixed_key("k1"))[:-4]
        + "AAAA",
        "reject_unknown_key": signed(make_certificate("vm-x", (B,), key=other), other),
        "reject_expired": signed(make_certificate("vm-x", (B,), issued_at=NOW - 7200)),
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
    # A replay of the certificate held, from anyone.
    node.receive(
        encode(Certs((signed(make_certificate("vm-x", (B,), seq=5)).encode(),))), ip_address(C), NOW
    )
    assert node.counters["reject_duplicate"] == 1
    assert node.counters["accepted"] == 2
    assert [p.instance for p in node.peer_view(NOW)] == ["vm-x"]
    assert not any(name.startswith("reject_wrong") for name in node.counters)


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


def test_wants_are_answered_only_to_an_address_a_certificate_names() -> None:
    node = single()
    node.receive(
        encode(Certs((signed(make_certificate("vm-b", (B,))).encode(),))), ip_address(B), NOW
    )
    # A sender we hold no certificate for gets nothing, even for our own certificate: a
    # spoofed source must not turn a WANT into certificates sent to someone else.
    for key in (instance_key("vm-b"), instance_key("vm-a")):
        step = node.receive(encode(Want((key,))), ip_address(C), NOW)
        assert step.out == ()
    assert node.counters["drop_unauthenticated"] == 2
    # Showing a certificate of another address does not help (it is taken, not answered) ...
    token = signed(make_certificate("vm-d", ("10.0.0.4",))).encode()
    step = node.receive(encode(Want((instance_key("vm-b"),), token)), ip_address(C), NOW)
    assert C not in certs_to(step)  # what went out is vm-d's news, pushed on to B
    assert node.counters["drop_unauthenticated"] == 3
    # ... showing its own does.
    token = signed(make_certificate("vm-c", (C,))).encode()
    step = node.receive(encode(Want((instance_key("vm-b"),), token)), ip_address(C), NOW)
    assert C in certs_to(step)


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
    # Its push is lost: rumours and push-pull must bring it.
    b.set_own_certificate(net.token("vm-b", B, persona="api", seq=2), net.now)
    assert b.flush().out
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

    net.change(B, "vm-b", persona="web", seq=2, priority=6)
    net.change(C, "vm-c", persona="api", seq=2, priority=1)
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
