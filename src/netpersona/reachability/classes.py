"""Endpoints that no check can tell apart, so a fleet's verdicts are computed once per class.

Every check of :mod:`netpersona.reachability.verdict` reads, of an endpoint, its persona (not
its ``x-`` extensions), its persona name, the labels some ``labels`` selector names, the
networks of its own interfaces, and
which networks hold its addresses: those of any interface in the fleet (own-subnet peers,
broadcast segments) and those the fleet's ``cidr`` selectors name. Two endpoints equal in all
of these get the same verdict against any third, as sender and as receiver. A fleet of 10k
instances has a few dozen such classes where its instances share personas, labels and
subnets, so comparing two fleets costs classes squared, not instances squared.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, replace
from ipaddress import IPv4Network, IPv6Network

from netpersona.model import CidrSelector, LabelSelector
from netpersona.reachability.verdict import Endpoint

__all__ = ["ClassPairs", "class_keys"]

Network = IPv4Network | IPv6Network


def _networks(endpoints: Mapping[str, Endpoint]) -> set[Network]:
    nets: set[Network] = set()
    for endpoint in endpoints.values():
        nets.update(i.network for i in endpoint.interfaces)
        if endpoint.persona is not None:
            nets.update(s.network for s in endpoint.persona.peers if isinstance(s, CidrSelector))
    return nets


def _label_keys(endpoints: Mapping[str, Endpoint]) -> set[str]:
    """The label keys some ``labels`` selector reads: no check looks at any other label."""
    keys: set[str] = set()
    for endpoint in endpoints.values():
        if endpoint.persona is not None:
            for selector in endpoint.persona.peers:
                if isinstance(selector, LabelSelector):
                    keys.update(k for k, _ in selector.labels)
    return keys


def class_keys(
    endpoints: Mapping[str, Endpoint], nets: set[Network], labels: set[str]
) -> dict[str, Hashable]:
    """Instance id -> a key equal for endpoints no check can tell apart (``nets``: every
    network, ``labels``: every label key, any check of either fleet compared can look at)."""
    keys: dict[str, Hashable] = {}
    for instance_id, e in endpoints.items():
        persona = None if e.persona is None else replace(e.persona, extensions=())
        keys[instance_id] = (
            persona,
            e.persona_name,
            tuple(sorted((k, v) for k, v in e.labels.items() if k in labels)),
            frozenset(i.network for i in e.interfaces),
            frozenset(n for n in nets if any(a in n for a in e.addresses)),
            frozenset(n for n in nets if any(i.ip in n for i in e.interfaces)),
        )
    return keys


@dataclass
class ClassPairs:
    """Instances grouped by their class in two fleets; pairs of groups stand for their
    instances' pairs."""

    groups: dict[tuple[Hashable, Hashable], list[str]]  # (class before, class after) -> ids
    before: dict[Hashable, Endpoint]  # a representative of each class
    after: dict[Hashable, Endpoint]

    @classmethod
    def of(cls, before: Mapping[str, Endpoint], after: Mapping[str, Endpoint]) -> ClassPairs:
        both = sorted(set(before) & set(after))
        nets = _networks(before) | _networks(after)
        labels = _label_keys(before) | _label_keys(after)
        kb = class_keys({i: before[i] for i in both}, nets, labels)
        ka = class_keys({i: after[i] for i in both}, nets, labels)
        groups: dict[tuple[Hashable, Hashable], list[str]] = {}
        rep_before: dict[Hashable, Endpoint] = {}
        rep_after: dict[Hashable, Endpoint] = {}
        for i in both:
            groups.setdefault((kb[i], ka[i]), []).append(i)
            rep_before.setdefault(kb[i], before[i])
            rep_after.setdefault(ka[i], after[i])
        return cls(groups, rep_before, rep_after)

    def moved(self) -> list[tuple[Hashable, Hashable]]:
        """The groups whose class changed: only pairs with one of them can change."""
        return [g for g in self.groups if g[0] != g[1]]

    def candidate_pairs(self) -> Iterator[tuple[tuple[Hashable, Hashable], ...]]:
        """(sender group, receiver group), each once, for every pair with a moved group."""
        moved = self.moved()
        seen: set[tuple[tuple[Hashable, Hashable], tuple[Hashable, Hashable]]] = set()
        for m in moved:
            for other in self.groups:
                for pair in ((m, other), (other, m)):
                    if pair not in seen:
                        seen.add(pair)
                        yield pair

    def instance_pairs(
        self, src: tuple[Hashable, Hashable], dst: tuple[Hashable, Hashable]
    ) -> Iterator[tuple[str, str]]:
        for a in self.groups[src]:
            for b in self.groups[dst]:
                if a != b:
                    yield a, b
