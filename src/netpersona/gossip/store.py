"""What one node holds: the newest verified certificate per instance, indexed for anti-entropy.

Entries are keyed by :func:`~netpersona.gossip.wire.instance_key`. Summaries of a key range (the
count and XOR of entry hashes in each of its 32 sub-ranges) are kept up to date incrementally for
the top two levels (32 and 1024 ranges), so a push-pull round costs O(changed entries), not
O(fleet). Deeper levels are computed from the entries of one 10-bit range (about n/1024 of them).

A :class:`HeldCertificates` may sit on a shared, read-only :class:`StoreSnapshot`: only
differences from it are kept.
The simulator starts thousands of nodes from one snapshot of a settled fleet this way; a real
node starts from an empty one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from netpersona.certs.certificate import PersonaCertificate
from netpersona.gossip.wire import BUCKETS, ROOT, Bucket, KeyRange, entry_hash

__all__ = ["Held", "HeldCertificates", "StoreSnapshot"]

IPAddress = IPv4Address | IPv6Address
_L2_SHIFT = 64 - 10
_L1_SHIFT = 64 - 5


@dataclass(frozen=True, slots=True)
class Held:
    key: int
    certificate: PersonaCertificate
    token: bytes

    @property
    def seq(self) -> int:
        return self.certificate.seq

    @property
    def hash(self) -> int:
        return entry_hash(self.key, self.certificate.seq)


class StoreSnapshot:
    """An immutable set of held certificates, shareable between :class:`HeldCertificates`."""

    def __init__(self, entries: Iterable[Held] = ()) -> None:
        self.by_key: dict[int, Held] = {}
        for held in entries:
            self.by_key[held.key] = held
        self.keys: list[int] = list(self.by_key)
        self.by_address: dict[IPAddress, int] = {}
        self.l1_count = [0] * BUCKETS
        self.l1_hash = [0] * BUCKETS
        self.l2_count = [0] * (BUCKETS * BUCKETS)
        self.l2_hash = [0] * (BUCKETS * BUCKETS)
        self.by_l2: dict[int, list[int]] = {}
        self.next_expiry = min(
            (h.certificate.expires_at for h in self.by_key.values()), default=float("inf")
        )
        for key, held in self.by_key.items():
            for address in held.certificate.addresses:
                self.by_address[address] = key
            digest = held.hash
            self.l1_count[key >> _L1_SHIFT] += 1
            self.l1_hash[key >> _L1_SHIFT] ^= digest
            self.l2_count[key >> _L2_SHIFT] += 1
            self.l2_hash[key >> _L2_SHIFT] ^= digest
            self.by_l2.setdefault(key >> _L2_SHIFT, []).append(key)


_EMPTY = StoreSnapshot()


class HeldCertificates:
    """The certificates one node holds, bounded by ``max_entries``."""

    def __init__(self, base: StoreSnapshot | None = None, *, max_entries: int = 16384) -> None:
        self.base = base or _EMPTY
        self.max_entries = max_entries
        self._over: dict[int, Held | None] = {}
        self._over_by_l2: dict[int, set[int]] = {}
        self._over_address: dict[IPAddress, int | None] = {}
        self._added: list[int] = []
        self._added_set: set[int] = set()
        self._l1_count = list(self.base.l1_count)
        self._l1_hash = list(self.base.l1_hash)
        self._l2: dict[int, tuple[int, int]] = {}
        self._size = len(self.base.by_key)

    def __len__(self) -> int:
        return self._size

    def get(self, key: int) -> Held | None:
        if key in self._over:
            return self._over[key]
        return self.base.by_key.get(key)

    def owner_of(self, address: IPAddress) -> Held | None:
        """The entry whose certificate lists ``address``, if any."""
        if address in self._over_address:
            key = self._over_address[address]
        else:
            key = self.base.by_address.get(address)
        held = self.get(key) if key is not None else None
        if held is None or address not in held.certificate.addresses:
            return None
        return held

    @property
    def full(self) -> bool:
        return self._size >= self.max_entries

    def put(self, held: Held) -> None:
        """Hold ``held``, replacing any entry for the same instance (the caller checked newness)."""
        old = self.get(held.key)
        if old is None and self.full:
            raise OverflowError(f"store holds {self._size} entries (max {self.max_entries})")
        self._set(held.key, old, held)

    def remove(self, key: int) -> Held | None:
        old = self.get(key)
        if old is not None:
            self._set(key, old, None)
        return old

    def _set(self, key: int, old: Held | None, new: Held | None) -> None:
        l1, l2 = key >> _L1_SHIFT, key >> _L2_SHIFT
        count, digest = self._l2_bucket(l2)
        if old is not None:
            self._size -= 1
            self._l1_count[l1] -= 1
            self._l1_hash[l1] ^= old.hash
            count, digest = count - 1, digest ^ old.hash
            for address in old.certificate.addresses:
                self._over_address[address] = None
        if new is not None:
            self._size += 1
            self._l1_count[l1] += 1
            self._l1_hash[l1] ^= new.hash
            count, digest = count + 1, digest ^ new.hash
            for address in new.certificate.addresses:
                self._over_address[address] = key
            if key not in self.base.by_key and key not in self._added_set:
                self._added.append(key)
                self._added_set.add(key)
        self._l2[l2] = (count, digest)
        self._over[key] = new
        self._over_by_l2.setdefault(l2, set()).add(key)

    def _l2_bucket(self, l2: int) -> tuple[int, int]:
        if l2 in self._l2:
            return self._l2[l2]
        return self.base.l2_count[l2], self.base.l2_hash[l2]

    def _keys_in_l2(self, l2: int) -> Iterator[int]:
        over = self._over_by_l2.get(l2, set())
        for key in self.base.by_l2.get(l2, ()):
            if key not in over:
                yield key
        for key in over:
            if self._over[key] is not None:
                yield key

    def keys_in(self, key_range: KeyRange) -> Iterator[int]:
        """Every held key inside ``key_range``."""
        if key_range.prefix_len >= 10:
            l2_ranges: Iterable[int] = (key_range.prefix >> _L2_SHIFT,)
        else:
            first = key_range.prefix >> _L2_SHIFT
            l2_ranges = range(first, first + (1 << (10 - key_range.prefix_len)))
        for l2 in l2_ranges:
            if self._l2_bucket(l2)[0] == 0:
                continue
            for key in self._keys_in_l2(l2):
                if key_range.contains(key):
                    yield key

    def summary(self, key_range: KeyRange = ROOT) -> tuple[Bucket, ...]:
        """Count and hash of each of the 32 sub-ranges of ``key_range``."""
        if key_range.prefix_len == 0:
            return tuple(Bucket(c, h) for c, h in zip(self._l1_count, self._l1_hash, strict=True))
        if key_range.prefix_len == 5:
            first = key_range.prefix >> _L2_SHIFT
            return tuple(Bucket(*self._l2_bucket(first + i)) for i in range(BUCKETS))
        counts = [0] * BUCKETS
        hashes = [0] * BUCKETS
        for key in self.keys_in(key_range):
            held = self.get(key)
            if held is not None:
                index = key_range.child_index(key)
                counts[index] += 1
                hashes[index] ^= held.hash
        return tuple(Bucket(c, h) for c, h in zip(counts, hashes, strict=True))

    def successor(self, key: int) -> int | None:
        """The next held key after ``key`` in key order, wrapping around (None: no other key).

        Looks at the 10-bit ranges from ``key``'s own onwards, so it costs about n/1024 keys in
        a large fleet and at most 1024 empty ranges in a small one.
        """
        ranges = BUCKETS * BUCKETS
        first = key >> _L2_SHIFT
        for step in range(ranges + 1):
            l2 = (first + step) % ranges
            if self._l2_bucket(l2)[0] == 0:
                continue
            keys = self._keys_in_l2(l2)
            if step == 0:
                keys = (k for k in keys if k > key)
            elif step == ranges:
                keys = (k for k in keys if k < key)
            found = min(keys, default=None)
            if found is not None:
                return found
        return None

    def key_at(self, index: int) -> int | None:
        """A key by position (for random choice); may be a removed one (then None)."""
        keys = self.base.keys
        if index < len(keys):
            key = keys[index]
        elif index - len(keys) < len(self._added):
            key = self._added[index - len(keys)]
        else:
            return None
        return key if self.get(key) is not None else None

    @property
    def positions(self) -> int:
        return len(self.base.keys) + len(self._added)

    def __iter__(self) -> Iterator[Held]:
        for key, held in self.base.by_key.items():
            if key not in self._over:
                yield held
        for held_or_none in self._over.values():
            if held_or_none is not None:
                yield held_or_none

    def expire(self, now: float) -> tuple[list[Held], float]:
        """Remove every expired entry: what was removed, and when the next one expires."""
        gone: list[Held] = []
        upcoming = float("inf")
        for held in list(self):
            if held.certificate.expired(now):
                self.remove(held.key)
                gone.append(held)
            else:
                upcoming = min(upcoming, held.certificate.expires_at)
        self.compact()
        return gone, upcoming

    def compact(self) -> None:
        """Forget positions of removed keys (so random choice does not keep missing)."""
        self._added = [k for k in self._added if self.get(k) is not None]
        self._added_set = set(self._added)
