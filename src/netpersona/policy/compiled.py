"""A policy compiled for speed: indexes, signatures and a match test that builds no strings.

The signature of an instance is its projection onto what the policy can tell apart:

* a label key a selector names counts only by the values selectors list (``zone NotIn
  [zone-0]`` sees zone-0, another value, or no label); a key a condition reads counts by value;
  every label when a condition reads ``labels`` as a whole;
* addresses count only by which policy subnets hold them, unless a condition reads them;
* name, subnets and interfaces only when something reads them; and the pin.

Two instances with the same signature get the same decision, so the engine decides each
signature once. :mod:`netpersona.policy.matching` is the slow path that gives reasons; a test
checks that both always agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

from netpersona.policy.conditions import Condition
from netpersona.policy.document import Match, Policy
from netpersona.policy.matching import Subject
from netpersona.policy.selectors import Requirement
from netpersona.records import Instance

__all__ = ["CompiledMatch", "CompiledPolicy", "Signature"]

Signature = tuple[Any, ...]
Network = IPv4Network | IPv6Network
_NO_SUBNETS: frozenset[Network] = frozenset()
# Stands for "a value no selector lists": never equal to a label value (those cannot hold NUL).
OTHER = "\x00"


@dataclass(frozen=True, slots=True)
class CompiledMatch:
    requirements: tuple[Requirement, ...]
    names: tuple[str, ...]
    subnets: tuple[Network, ...]
    interfaces: frozenset[str]
    condition: Condition | None  # instance side only (context-only ones run per context)
    context_keys: frozenset[str]
    # The condition's results by the values it reads, when those are a few labels and context
    # keys: many signatures differ only in what the condition does not look at.
    memo: dict[tuple[Any, ...], bool] | None = field(default=None, compare=False)

    @classmethod
    def of(cls, match: Match) -> CompiledMatch:
        condition = match.when if match.when is not None and not match.when.context_only else None
        memoizable = (
            condition is not None
            and condition.label_keys is not None
            and condition.instance_variables <= {"labels"}
        )
        return cls(
            match.labels.requirements,
            match.names,
            match.subnets,
            match.interfaces,
            condition,
            match.context_keys,
            {} if memoizable else None,
        )

    def matches(self, subject: Subject, context: Mapping[str, str]) -> bool:
        labels = subject.labels
        for requirement in self.requirements:
            if not requirement.matches(labels):
                return False
        if self.names and not any(fnmatchcase(subject.name, g) for g in self.names):
            return False
        if self.subnets and not subject.in_any(self.subnets):
            return False
        if self.interfaces and self.interfaces.isdisjoint(subject.interfaces):
            return False
        condition = self.condition
        if condition is None:
            return True
        memo = self.memo
        if memo is not None:
            assert condition.label_keys is not None
            key = tuple(labels.get(k) for k in sorted(condition.label_keys)) + tuple(
                context[k] for k in sorted(condition.context_keys)
            )
            known = memo.get(key)
            if known is not None:
                return known
        # Only what the condition reads: converting the rest into CEL values costs more than
        # evaluating it.
        activation = {name: subject.variable(name) for name in condition.instance_variables}
        for name in condition.context_keys:
            activation[name] = context[name]
        result, error = condition.evaluate(activation)
        matched = error is None and result
        if memo is not None:
            memo[key] = matched
        return matched


def _index(matches: list[Match]) -> tuple[dict[str, dict[str, list[int]]], list[int]]:
    """Each match under one ``In`` requirement's values; the rest in the free list."""
    anchor: dict[str, dict[str, list[int]]] = {}
    free: list[int] = []
    for index, match in enumerate(matches):
        anchored = match.labels.anchors()
        if anchored is None:
            free.append(index)
            continue
        key, values = anchored
        by_value = anchor.setdefault(key, {})
        for value in values:
            by_value.setdefault(value, []).append(index)
    return anchor, free


def _address_int(text: str) -> tuple[int, int]:
    """(version, integer) of an address already validated where it entered (inventory, API).

    Dotted-quad IPv4 is converted by arithmetic: ipaddress's parser costs more than the rest of
    an instance's signature, and the fleet's addresses were checked by it on the way in.
    """
    parts = text.split(".")
    if len(parts) == 4 and parts[0].isdigit():
        a, b, c, d = parts
        return 4, (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)
    address: IPv4Address | IPv6Address = ip_address(text)
    return address.version, int(address)


class CompiledPolicy:
    """The policy as indexes; rebuilt only when the policy changes."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        matches = [r.match for r in policy.rules] + [o.match for o in policy.overlays]
        self.rules = [CompiledMatch.of(r.match) for r in policy.rules]
        self.overlays = [CompiledMatch.of(o.match) for o in policy.overlays]
        reads: set[str] = set()
        cel_label_keys: set[str] = set()
        self.whole_labels = False
        for match in matches:
            if match.when is None:
                continue
            reads |= match.when.instance_variables
            if match.when.label_keys is None:
                self.whole_labels = True
            else:
                cel_label_keys |= match.when.label_keys
        projection: dict[str, frozenset[str] | None] = {}
        for match in matches:
            for requirement in match.labels.requirements:
                known = projection.get(requirement.key, frozenset())
                if known is not None:
                    projection[requirement.key] = known | requirement.values
        for key in cel_label_keys:
            projection[key] = None  # a condition may compare it with anything
        self.projection = projection
        self.uses_name = "name" in reads or any(m.names for m in matches)
        self.uses_ips = "addresses" in reads
        self.uses_subnets = "subnets" in reads
        self.uses_interfaces = "interfaces" in reads or any(m.interfaces for m in matches)
        subnets = {net for m in matches for net in m.subnets}
        octets: dict[int, dict[str, Network]] = {}
        rest: dict[tuple[int, int], dict[int, Network]] = {}
        for net in subnets:
            if net.version == 4 and net.prefixlen % 8 == 0 and net.prefixlen:
                count = net.prefixlen // 8
                leading = ".".join(str(net.network_address).split(".")[:count])
                octets.setdefault(count, {})[leading] = net
            else:
                by_start = rest.setdefault((net.version, net.prefixlen), {})
                by_start[int(net.network_address)] = net
        self.octet_lookup = tuple(octets.items())
        # Which instances can meet a match on subnets at all: those whose labels anchor one
        # (finding the subnets that hold an address costs more than the rest of a signature).
        self.subnets_always = False
        self.subnet_anchor: dict[str, frozenset[str]] = {}
        for match in matches:
            if not match.subnets:
                continue
            anchored = match.labels.anchors()
            if anchored is None:
                self.subnets_always = True
            else:
                key, values = anchored
                self.subnet_anchor[key] = self.subnet_anchor.get(key, frozenset()) | values
        self.subnet_lookup_rest = tuple(rest.items())
        self.rule_anchor, self.rule_free = _index([r.match for r in policy.rules])
        self.overlay_anchor, self.overlay_free = _index([o.match for o in policy.overlays])
        self.rules_by_context: dict[str, list[int]] = {}
        for index, rule in enumerate(policy.rules):
            for key in rule.match.context_keys:
                self.rules_by_context.setdefault(key, []).append(index)
        self.overlays_by_context: dict[str, list[int]] = {}
        for index, overlay in enumerate(policy.overlays):
            for key in overlay.match.context_keys:
                self.overlays_by_context.setdefault(key, []).append(index)

    @staticmethod
    def candidates(
        anchor: dict[str, dict[str, list[int]]], free: list[int], labels: Mapping[str, str]
    ) -> list[int]:
        """The matches a label set could meet, in policy order (each at most once)."""
        found = list(free)
        for key, by_value in anchor.items():
            value = labels.get(key)
            if value is not None:
                hit = by_value.get(value)
                if hit:
                    found.extend(hit)
        found.sort()
        return found

    def _membership(self, instance: Instance) -> frozenset[Network]:
        found: set[Network] = set()
        for text in instance.addresses:
            self._member(text.split("/")[0], found)
        for interface in instance.interfaces:
            for text in interface.addresses:
                self._member(text.split("/")[0], found)
        return frozenset(found)

    def _member(self, text: str, found: set[Network]) -> None:
        parts = text.split(".")
        if len(parts) == 4 and parts[0].isdigit():
            # IPv4 subnets on octet boundaries (most are) are found by their leading octets
            # as written, without converting the address at all.
            for count, by_octets in self.octet_lookup:
                net = by_octets.get(".".join(parts[:count]))
                if net is not None:
                    found.add(net)
            if not self.subnet_lookup_rest:
                return
        version, value = _address_int(text)
        for (net_version, prefix), by_start in self.subnet_lookup_rest:
            if net_version == version:
                shift = (32 if version == 4 else 128) - prefix
                net = by_start.get(value >> shift << shift)
                if net is not None:
                    found.add(net)

    def signature(self, instance: Instance) -> Signature:
        if self.whole_labels:
            labels: tuple[Any, ...] = instance.labels
        else:
            projection = self.projection
            projected = []
            for key, value in instance.labels:  # few labels, sorted: the result is too
                if key in projection:
                    values = projection[key]
                    projected.append((key, value if values is None or value in values else OTHER))
            labels = tuple(projected)
        return (
            labels,
            instance.name if self.uses_name else None,
            instance.ips() if self.uses_ips else None,
            instance.subnets() if self.uses_subnets else None,
            instance.interface_names() if self.uses_interfaces else None,
            self._membership(instance) if self._may_need_subnets(instance) else _NO_SUBNETS,
            instance.pin,
        )

    def _may_need_subnets(self, instance: Instance) -> bool:
        if self.subnets_always:
            return True
        anchor = self.subnet_anchor
        if anchor:
            for key, value in instance.labels:
                values = anchor.get(key)
                if values is not None and value in values:
                    return True
        return False

    def subject(self, signature: Signature) -> Subject:
        labels, name, ips, subnets, interfaces, member_of, _pin = signature
        return Subject(
            dict(labels), name or "", ips or (), subnets or (), interfaces or (), member_of
        )
