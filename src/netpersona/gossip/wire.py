"""The control channel's wire format: small, versioned, bounded binary datagrams.

Every datagram is one message::

    magic "NP" (2) | version (1) | kind (1) | flags (1) | body

    flags bit 0  UNKNOWN_YOU   the sender holds no certificate for the receiver's address
    flags bit 1  RANGED        (DIGEST) the entries are all the sender holds in a key range

    DIGEST   [prefix_len u8, prefix u64 if RANGED] count u16, count x (key u64, seq u64)
    SUMMARY  prefix_len u8, prefix u64, 32 x (count u32, hash u64)
    WANT     count u16, count x key u64, token_len u16, token (the sender's own certificate)
    CERTS    count u8, count x (token_len u16, token)

Integers are big-endian (network order). A key is the first 8 bytes of BLAKE2b of the instance
id; a range is the keys whose top ``prefix_len`` bits equal those of ``prefix``. Other flag bits
are refused, so that a later version can give them a meaning an older node will not misread.
Nothing is longer than :data:`MAX_DATAGRAM` (1200 bytes: under the IPv6 minimum MTU of 1280 with
the IP and UDP headers, so no datagram is ever fragmented, RFC 8200 section 5).
Decoding checks every length against what is left, and any violation is one
:class:`WireError`: the caller drops the datagram and counts it; nothing else can escape.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from hashlib import blake2b

from netpersona.errors import WireError

__all__ = [
    "BUCKETS",
    "BUCKET_BITS",
    "ENTRY_SIZE",
    "HEADER_SIZE",
    "MAGIC",
    "MAX_DATAGRAM",
    "MAX_PREFIX_LEN",
    "ROOT",
    "VERSION",
    "Bucket",
    "Certs",
    "Digest",
    "Flag",
    "Kind",
    "KeyRange",
    "Message",
    "Summary",
    "Want",
    "WireError",
    "decode",
    "encode",
    "entry_hash",
    "instance_key",
    "pack_certs",
    "pack_wants",
]

MAGIC = b"NP"
VERSION = 1
MAX_DATAGRAM = 1200
HEADER_SIZE = 5
ENTRY_SIZE = 16
BUCKET_BITS = 5
BUCKETS = 1 << BUCKET_BITS
MAX_PREFIX_LEN = 64 - BUCKET_BITS
_MASK64 = (1 << 64) - 1


class Kind(IntEnum):
    DIGEST = 1
    SUMMARY = 2
    WANT = 3
    CERTS = 4


class Flag(IntEnum):
    UNKNOWN_YOU = 1
    RANGED = 2


def instance_key(instance: str) -> int:
    return int.from_bytes(blake2b(instance.encode(), digest_size=8).digest(), "big")


def entry_hash(key: int, seq: int) -> int:
    """One (instance, seq) pair's contribution to a range summary (XOR-combined)."""
    data = key.to_bytes(8, "big") + seq.to_bytes(8, "big")
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True, order=True)
class KeyRange:
    prefix_len: int
    prefix: int

    def __post_init__(self) -> None:
        if not 0 <= self.prefix_len <= 64 or not 0 <= self.prefix <= _MASK64:
            raise WireError(f"range /{self.prefix_len} {self.prefix:#x} is out of bounds")
        if self.prefix & self.low_mask:
            raise WireError(f"range prefix {self.prefix:#x} has bits below /{self.prefix_len}")

    @property
    def low_mask(self) -> int:
        return (1 << (64 - self.prefix_len)) - 1

    def contains(self, key: int) -> bool:
        return key & ~self.low_mask & _MASK64 == self.prefix

    def child(self, index: int) -> KeyRange:
        shift = 64 - self.prefix_len - BUCKET_BITS
        return KeyRange(self.prefix_len + BUCKET_BITS, self.prefix | (index << shift))

    def child_index(self, key: int) -> int:
        return (key >> (64 - self.prefix_len - BUCKET_BITS)) & (BUCKETS - 1)


ROOT = KeyRange(0, 0)


@dataclass(frozen=True, slots=True)
class Bucket:
    count: int
    hash: int


@dataclass(frozen=True, slots=True)
class Digest:
    """(key, seq) entries: news, or (with ``range``) all the sender holds in that range."""

    entries: tuple[tuple[int, int], ...]
    range: KeyRange | None = None
    flags: int = 0


@dataclass(frozen=True, slots=True)
class Summary:
    range: KeyRange
    buckets: tuple[Bucket, ...]
    flags: int = 0


@dataclass(frozen=True, slots=True)
class Want:
    keys: tuple[int, ...]
    token: bytes = b""
    flags: int = 0


@dataclass(frozen=True, slots=True)
class Certs:
    tokens: tuple[bytes, ...]
    flags: int = 0


Message = Digest | Summary | Want | Certs


def pack_certs(tokens: Iterable[bytes]) -> list[Certs]:
    """``tokens`` in as few CERTS datagrams as fit (each token must fit one on its own)."""
    messages: list[Certs] = []
    batch: list[bytes] = []
    size = HEADER_SIZE + 1
    for token in tokens:
        if size + 2 + len(token) > MAX_DATAGRAM or len(batch) == 255:
            messages.append(Certs(tuple(batch)))
            batch, size = [], HEADER_SIZE + 1
        batch.append(token)
        size += 2 + len(token)
    if batch:
        messages.append(Certs(tuple(batch)))
    return messages


def pack_wants(keys: Sequence[int], token: bytes) -> list[Want]:
    """WANTs for ``keys``, each carrying ``token`` (the asker's certificate, or nothing)."""
    per_datagram = (MAX_DATAGRAM - HEADER_SIZE - 4 - len(token)) // 8
    return [
        Want(tuple(keys[start : start + per_datagram]), token)
        for start in range(0, len(keys), per_datagram)
    ]


_HEADER = struct.Struct("!2sBBB")
_ENTRY = struct.Struct("!QQ")
_RANGE = struct.Struct("!BQ")
_BUCKET = struct.Struct("!IQ")
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")


def encode(message: Message) -> bytes:
    """The datagram for ``message`` (:class:`WireError` if it would exceed the bounds)."""
    flags = message.flags & Flag.UNKNOWN_YOU
    parts: list[bytes] = []
    if isinstance(message, Digest):
        kind = Kind.DIGEST
        if message.range is not None:
            flags |= Flag.RANGED
            parts.append(_RANGE.pack(message.range.prefix_len, message.range.prefix))
        parts.append(_U16.pack(len(message.entries)))
        parts.extend(_ENTRY.pack(key, seq) for key, seq in message.entries)
    elif isinstance(message, Summary):
        kind = Kind.SUMMARY
        if len(message.buckets) != BUCKETS:
            raise WireError(f"a summary has {BUCKETS} buckets, not {len(message.buckets)}")
        parts.append(_RANGE.pack(message.range.prefix_len, message.range.prefix))
        parts.extend(_BUCKET.pack(b.count, b.hash) for b in message.buckets)
    elif isinstance(message, Want):
        kind = Kind.WANT
        parts.append(_U16.pack(len(message.keys)))
        parts.extend(_U64.pack(key) for key in message.keys)
        parts.append(_U16.pack(len(message.token)) + message.token)
    else:
        kind = Kind.CERTS
        if len(message.tokens) > 255:
            raise WireError(f"{len(message.tokens)} certificates in one datagram (max 255)")
        parts.append(bytes([len(message.tokens)]))
        parts.extend(_U16.pack(len(token)) + token for token in message.tokens)
    data = _HEADER.pack(MAGIC, VERSION, kind, flags) + b"".join(parts)
    if len(data) > MAX_DATAGRAM:
        raise WireError(f"{kind.name} of {len(data)} bytes exceeds {MAX_DATAGRAM}")
    return data


class _Reader:
    __slots__ = ("data", "offset")

    def __init__(self, data: bytes, offset: int) -> None:
        self.data = data
        self.offset = offset

    def take(self, size: int, what: str) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise WireError(f"{what}: needs {size} bytes, {len(self.data) - self.offset} left")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def unpack(self, fmt: struct.Struct, what: str) -> tuple[int, ...]:
        return fmt.unpack(self.take(fmt.size, what))

    def end(self) -> None:
        if self.offset != len(self.data):
            raise WireError(f"{len(self.data) - self.offset} trailing bytes")


def _range(reader: _Reader, limit: int) -> KeyRange:
    prefix_len, prefix = reader.unpack(_RANGE, "range")
    if prefix_len > limit:
        raise WireError(f"range /{prefix_len} is longer than /{limit}")
    return KeyRange(prefix_len, prefix)


def decode(data: bytes) -> Message:
    """A datagram -> its message, or :class:`WireError` saying what is wrong with it."""
    if len(data) > MAX_DATAGRAM:
        raise WireError(f"datagram of {len(data)} bytes exceeds {MAX_DATAGRAM}")
    if len(data) < HEADER_SIZE:
        raise WireError(f"datagram of {len(data)} bytes is shorter than the header")
    magic, version, kind, flags = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise WireError(f"magic {magic!r} is not {MAGIC!r}")
    if version != VERSION:
        raise WireError(f"version {version} (this node speaks {VERSION})")
    if flags & ~(Flag.UNKNOWN_YOU | Flag.RANGED):
        raise WireError(f"unknown flags {flags:#x}")
    reader = _Reader(data, HEADER_SIZE)
    message: Message
    public_flags = flags & Flag.UNKNOWN_YOU
    if kind == Kind.DIGEST:
        key_range = _range(reader, 64) if flags & Flag.RANGED else None
        (count,) = reader.unpack(_U16, "digest count")
        raw = reader.take(count * ENTRY_SIZE, "digest entries")
        message = Digest(tuple(_ENTRY.iter_unpack(raw)), key_range, public_flags)
    elif kind == Kind.SUMMARY:
        key_range = _range(reader, MAX_PREFIX_LEN)
        raw = reader.take(BUCKETS * _BUCKET.size, "summary buckets")
        buckets = tuple(Bucket(c, h) for c, h in _BUCKET.iter_unpack(raw))
        message = Summary(key_range, buckets, public_flags)
    elif kind == Kind.WANT:
        (count,) = reader.unpack(_U16, "want count")
        keys = tuple(k for (k,) in _U64.iter_unpack(reader.take(count * 8, "want keys")))
        (size,) = reader.unpack(_U16, "want token length")
        message = Want(keys, reader.take(size, "want token"), public_flags)
    elif kind == Kind.CERTS:
        (count,) = reader.take(1, "certs count")
        tokens: list[bytes] = []
        for index in range(count):
            (size,) = reader.unpack(_U16, f"certificate {index} length")
            tokens.append(reader.take(size, f"certificate {index}"))
        message = Certs(tuple(tokens), public_flags)
    else:
        raise WireError(f"unknown message kind {kind}")
    if flags & Flag.RANGED and kind != Kind.DIGEST:
        raise WireError("RANGED flag on a message that is not a digest")
    reader.end()
    return message
