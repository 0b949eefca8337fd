"""The wire format: every message survives a round trip, and no input makes decode misbehave."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netpersona.gossip.wire import (
    BUCKETS,
    MAX_DATAGRAM,
    Bucket,
    Certs,
    Digest,
    Flag,
    KeyRange,
    Message,
    Summary,
    Want,
    WireError,
    decode,
    encode,
    pack_certs,
    pack_wants,
)

U64 = st.integers(0, 2**64 - 1)
U32 = st.integers(0, 2**32 - 1)


@st.composite
def key_ranges(draw: st.DrawFn, limit: int = 59) -> KeyRange:
    length = draw(st.integers(0, limit))
    prefix = draw(U64) & ~((1 << (64 - length)) - 1) & (2**64 - 1)
    return KeyRange(length, prefix)


flags = st.sampled_from([0, int(Flag.UNKNOWN_YOU)])


messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(
        Digest,
        st.lists(st.tuples(U64, U64), max_size=70).map(tuple),
        st.none() | key_ranges(64),
        flags,
    ),
    st.builds(
        Summary,
        key_ranges(),
        st.lists(st.builds(Bucket, U32, U64), min_size=BUCKETS, max_size=BUCKETS).map(tuple),
        flags,
    ),
    st.builds(
        Want,
        st.lists(U64, max_size=60).map(tuple),
        st.binary(max_size=500),
        flags,
    ),
    st.builds(Certs, st.lists(st.binary(max_size=300), max_size=3).map(tuple), flags),
)


@given(messages)
def test_every_message_round_trips(message: Message) -> None:
    data = encode(message)
    assert len(data) <= MAX_DATAGRAM
    assert decode(data) == message


@settings(max_examples=400)
@given(st.binary(max_size=MAX_DATAGRAM + 200))
def test_arbitrary_bytes_decode_or_raise_wire_error_only(data: bytes) -> None:
    try:
        message = decode(data)
    except WireError:
        return
    # What decodes is canonical: encoding it gives back the very same bytes.
    assert encode(message) == data


@settings(max_examples=400)
@given(messages, st.data())
def test_mutated_messages_decode_or_raise_wire_error_only(
    message: Message, data: st.DataObject
) -> None:
    raw = bytearray(encode(message))
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "grow"]))
        if action == "flip" and raw:
            index = data.draw(st.integers(0, len(raw) - 1))
            raw[index] ^= data.draw(st.integers(1, 255))
        elif action == "cut" and raw:
            del raw[data.draw(st.integers(0, len(raw) - 1)) :]
        else:
            raw += data.draw(st.binary(min_size=1, max_size=40))
    try:
        decoded = decode(bytes(raw))
    except WireError:
        return
    assert encode(decoded) == bytes(raw)


def test_many_certificates_are_packed_into_as_few_datagrams_as_fit() -> None:
    tokens = [bytes([i]) * 400 for i in range(7)]
    packed = pack_certs(tokens)
    assert [len(m.tokens) for m in packed] == [2, 2, 2, 1]  # 3 x 402 bytes would not fit
    assert [t for m in packed for t in m.tokens] == tokens
    assert all(len(encode(m)) <= MAX_DATAGRAM for m in packed)
    wants = pack_wants(list(range(294)), b"t" * 400)  # 98 keys a datagram
    assert [k for w in wants for k in w.keys] == list(range(294))
    assert all(len(encode(w)) <= MAX_DATAGRAM and w.token == b"t" * 400 for w in wants)
    assert len(wants) == 3


def test_oversized_messages_are_refused_both_ways() -> None:
    with pytest.raises(WireError, match="exceeds 1200"):
        encode(Digest(tuple((i, i) for i in range(80))))
    with pytest.raises(WireError, match="exceeds 1200"):
        decode(encode(Digest(())) + bytes(1300))


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (b"NP", "shorter than the header"),
        (b"XX\x01\x01\x00\x00\x00", "magic"),
        (b"NP\x02\x01\x00\x00\x00", "version 2"),
        (b"NP\x01\x09\x00", "unknown message kind 9"),
        (b"NP\x01\x01\x80\x00\x00", "unknown flags"),
        (b"NP\x01\x01\x00\x00\x02" + bytes(16), "digest entries"),
        (b"NP\x01\x01\x00\x00\x00\x00", "trailing"),
        (b"NP\x01\x03\x02\x00\x00\x00\x00", "RANGED flag on a message that is not a digest"),
        # Bit 2 once marked digests carrying owner addresses; no version gives it a meaning now.
        (b"NP\x01\x01\x04\x00\x01" + bytes(32), "unknown flags 0x4"),
    ],
)
def test_decode_errors_say_what_is_wrong(data: bytes, complaint: str) -> None:
    with pytest.raises(WireError, match=complaint):
        decode(data)


def test_key_ranges_nest() -> None:
    root = KeyRange(0, 0)
    child = root.child(31)
    assert child == KeyRange(5, 31 << 59)
    assert child.contains(2**64 - 1)
    assert not child.contains(0)
    assert root.child_index(2**64 - 1) == 31
    with pytest.raises(WireError, match="bits below"):
        KeyRange(4, 1)
