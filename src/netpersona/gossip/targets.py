"""Whom a node sends to: random members (rumours, push-pull, pushes) and its successor in key
order (pushes). Membership is the certificates held; seeds make up the number while few are
known. Pure: randomness is a function passed in."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from ipaddress import IPv4Address, IPv6Address

from netpersona.certs.certificate import PersonaCertificate
from netpersona.gossip.store import HeldCertificates

__all__ = ["address_of", "push_targets", "random_peers", "successor_address"]

IPAddress = IPv4Address | IPv6Address


def address_of(cert: PersonaCertificate, version: int) -> IPAddress | None:
    """The certificate's first address of IP ``version`` (one socket speaks one family)."""
    for address in cert.addresses:
        if address.version == version:
            return address
    return None


def successor_address(store: HeldCertificates, key: int, version: int) -> IPAddress | None:
    """The address of the VM whose key follows ``key`` in key order (wrapping around)."""
    after = store.successor(key)
    held = store.get(after) if after is not None else None
    return address_of(held.certificate, version) if held is not None else None


def push_targets(
    store: HeldCertificates,
    seeds: Sequence[IPAddress],
    *,
    own_key: int | None,
    count: int,
    skip: Collection[IPAddress],
    version: int,
    random: Callable[[int], int],
) -> list[IPAddress]:
    """Whom to push news to: ``count`` peers not in ``skip`` (its owner, its sender, us).

    The first is the successor of ``own_key`` in key order: as every node that learns the
    news does the same, without loss the pushes alone reach every VM (the ring closes at the
    owner). The others are random, which keeps the depth logarithmic. Nothing tells a node
    which peers' selectors a certificate matters to (certificates do not carry selectors), so
    no peer is preferred for that.
    """
    successor = successor_address(store, own_key, version) if own_key is not None else None
    first = [successor] if successor is not None and successor not in skip else []
    return first + random_peers(
        store, seeds, count=count - len(first), skip={*skip, *first}, version=version, random=random
    )


def random_peers(
    store: HeldCertificates,
    seeds: Sequence[IPAddress],
    *,
    count: int,
    skip: Collection[IPAddress],
    version: int,
    random: Callable[[int], int],
) -> list[IPAddress]:
    """Up to ``count`` distinct random peers not in ``skip``: members first, seeds to make up
    the number. ``random(n)`` draws from 0..n-1."""
    chosen: list[IPAddress] = []
    positions = store.positions
    for _ in range(count * 4 if positions else 0):
        if len(chosen) >= count:
            break
        key = store.key_at(random(positions))
        held = store.get(key) if key is not None else None
        address = address_of(held.certificate, version) if held is not None else None
        if address is not None and address not in skip and address not in chosen:
            chosen.append(address)
    spare = [s for s in seeds if s not in chosen and s not in skip]
    while len(chosen) < count and spare:
        chosen.append(spare.pop(random(len(spare))))
    return chosen
