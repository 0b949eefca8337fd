"""Push-pull anti-entropy: what a node answers to a summary or a ranged digest, from what it
holds. Pure functions of a :class:`HeldCertificates` and a message.

A summary is the count and XOR-hash of each of 32 key ranges. The receiver answers each range
that differs (up to ``branches`` of them) with its entries there, when both sides hold at most
:data:`DIGEST_CAP` in it, or else with the summary of that range one level down. A digest of a
whole range is answered with what the receiver holds newer than the sender, and the receiver
asks (WANT) for what the sender holds newer. So a node that missed every rumour, a renewal, or a
node that joins gets the certificates whatever the fleet size, in 1200-byte datagrams.
"""

from __future__ import annotations

from netpersona.gossip.store import HeldCertificates
from netpersona.gossip.wire import (
    BUCKETS,
    ENTRY_SIZE,
    MAX_DATAGRAM,
    MAX_PREFIX_LEN,
    Digest,
    KeyRange,
    Message,
    Summary,
)

__all__ = ["DIGEST_CAP", "DIGEST_MAX", "newer_in_range", "range_digest", "summary_replies"]

# A digest answers a summary bucket once both sides hold at most this many entries in it.
DIGEST_CAP = 64
# Entries that fit one digest datagram (header, range and count take 16 bytes).
DIGEST_MAX = (MAX_DATAGRAM - 16) // ENTRY_SIZE


def range_digest(store: HeldCertificates, key_range: KeyRange) -> Digest:
    """All ``store`` holds in ``key_range`` (as much as fits one datagram)."""
    entries: list[tuple[int, int]] = []
    for key in store.keys_in(key_range):
        held = store.get(key)
        if held is not None:
            entries.append((key, held.seq))
        if len(entries) >= DIGEST_MAX:
            break
    return Digest(tuple(entries), key_range)


def newer_in_range(store: HeldCertificates, theirs: Digest) -> Digest | None:
    """What ``store`` holds newer than a ranged digest says its sender holds (None: nothing)."""
    assert theirs.range is not None
    seqs = dict(theirs.entries)
    ours: list[tuple[int, int]] = []
    for key in store.keys_in(theirs.range):
        held = store.get(key)
        if held is not None and seqs.get(key, -1) < held.seq:
            ours.append((key, held.seq))
            if len(ours) >= DIGEST_MAX:
                break
    return Digest(tuple(ours)) if ours else None


def summary_replies(
    store: HeldCertificates, theirs: Summary, *, branches: int, start: int
) -> list[Message]:
    """The answer to a summary: up to ``branches`` differing ranges, from the ``start``-th
    differing one on (chosen at random by the caller, so that repeated exchanges cover every
    difference)."""
    mine = store.summary(theirs.range)
    differing = [i for i in range(BUCKETS) if mine[i] != theirs.buckets[i]]
    replies: list[Message] = []
    for n in range(min(branches, len(differing))):
        i = differing[(start + n) % len(differing)]
        child = theirs.range.child(i)
        biggest = max(mine[i].count, theirs.buckets[i].count)
        if biggest <= DIGEST_CAP or child.prefix_len > MAX_PREFIX_LEN:
            replies.append(range_digest(store, child))
        else:
            replies.append(Summary(child, store.summary(child)))
    return replies
