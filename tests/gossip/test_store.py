"""Range summaries stay equal to a brute-force count however entries come and go."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netpersona.gossip.store import Held, HeldCertificates, StoreSnapshot
from netpersona.gossip.wire import BUCKETS, Bucket, KeyRange, entry_hash
from netpersona.testing.certs import make_certificate

CERT = make_certificate()


def held(key: int, seq: int) -> Held:
    return Held(key, replace(CERT, seq=seq, instance=f"vm-{key:x}"), b"token")


def brute_summary(entries: dict[int, int], key_range: KeyRange) -> tuple[Bucket, ...]:
    counts = [0] * BUCKETS
    hashes = [0] * BUCKETS
    for key, seq in entries.items():
        if key_range.contains(key):
            index = key_range.child_index(key)
            counts[index] += 1
            hashes[index] ^= entry_hash(key, seq)
    return tuple(Bucket(c, h) for c, h in zip(counts, hashes, strict=True))


# Keys crowd into a few top-level ranges so deep levels (prefix 10 and 15) get exercised.
keys = st.integers(0, 2**20 - 1).map(lambda k: (k << 44) | (k * 2654435761 % (1 << 44)))
operations = st.lists(st.tuples(st.sampled_from(["put", "remove"]), keys, st.integers(1, 9)))


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(keys, st.integers(1, 9), max_size=40), operations)
def test_summaries_match_a_brute_force_count(
    base: dict[int, int], ops: list[tuple[str, int, int]]
) -> None:
    store = HeldCertificates(StoreSnapshot(held(k, s) for k, s in base.items()))
    expected = dict(base)
    for op, key, seq in ops:
        if op == "put":
            store.put(held(key, seq))
            expected[key] = seq
        else:
            store.remove(key)
            expected.pop(key, None)
    assert len(store) == len(expected)
    assert {h.key: h.seq for h in store} == expected
    probes = {KeyRange(0, 0)}
    for key in list(expected)[:5]:
        for length in (5, 10, 15):
            probes.add(KeyRange(length, key & ~((1 << (64 - length)) - 1)))
    for key_range in probes:
        assert store.summary(key_range) == brute_summary(expected, key_range)
        assert sorted(store.keys_in(key_range)) == sorted(
            k for k in expected if key_range.contains(k)
        )


def test_a_full_store_refuses_new_instances_but_takes_updates() -> None:
    store = HeldCertificates(max_entries=2)
    store.put(held(1, 1))
    store.put(held(2, 1))
    assert store.full
    store.put(held(2, 2))
    assert store.get(2) is not None
    with pytest.raises(OverflowError, match="max 2"):
        store.put(held(3, 1))


def test_owner_of_follows_address_changes() -> None:
    store = HeldCertificates()
    first = Held(7, replace(CERT, addresses=CERT.addresses), b"t1")
    store.put(first)
    assert store.owner_of(CERT.addresses[0]) == first
    moved = make_certificate(addresses=("10.9.9.9",), seq=2)
    store.put(Held(7, moved, b"t2"))
    assert store.owner_of(CERT.addresses[0]) is None
    assert store.owner_of(moved.addresses[0]) == Held(7, moved, b"t2")


@settings(max_examples=100, deadline=None)
@given(
    st.sets(st.integers(0, 2**64 - 1), max_size=30),
    st.sets(st.integers(0, 2**64 - 1), max_size=5),
    st.integers(0, 2**64 - 1),
)
def test_the_successor_is_the_next_key_in_order_wrapping_around(
    base: set[int], added: set[int], start: int
) -> None:
    store = HeldCertificates(StoreSnapshot(held(k, 1) for k in base))
    for key in added:
        store.put(held(key, 2))
    if base:
        store.remove(min(base))
    everything = sorted(k for k in base | added if store.get(k) is not None)
    others = [k for k in everything if k != start]
    expected = min((k for k in others if k > start), default=min(others, default=None))
    assert store.successor(start) == expected


def test_expiry_removes_what_expired_and_says_when_the_next_one_does() -> None:
    soon = replace(CERT, instance="vm-soon", expires_at=CERT.issued_at + 10)
    later = replace(CERT, instance="vm-later", expires_at=CERT.issued_at + 20)
    store = HeldCertificates(StoreSnapshot([Held(1, soon, b"t"), Held(2, later, b"t")]))
    gone, upcoming = store.expire(CERT.issued_at + 15)
    assert [h.certificate.instance for h in gone] == ["vm-soon"]
    assert upcoming == later.expires_at
    assert [h.key for h in store] == [2]
