"""Does a match select an instance? Shared by the engine's fast path and by ``explain``.

A :class:`Subject` is the part of an instance a policy can look at; the engine builds one per
distinct *signature* (the projection of an instance onto what the policy reads), so a thousand
instances that differ only in labels no rule mentions are decided once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from netpersona.policy.document import Match

__all__ = ["Subject", "instance_failure", "context_failure"]


@dataclass(frozen=True, slots=True)
class Subject:
    labels: Mapping[str, str]
    name: str
    ips: tuple[str, ...]
    subnets: tuple[IPv4Network | IPv6Network, ...]
    interfaces: tuple[str, ...]
    # The policy subnets holding one of the addresses, when the engine has worked it out.
    member_of: frozenset[IPv4Network | IPv6Network] | None = None

    def in_any(self, subnets: tuple[IPv4Network | IPv6Network, ...]) -> bool:
        if self.member_of is not None:
            return not self.member_of.isdisjoint(subnets)
        return any(a in net for a in self.addresses() for net in subnets)

    def variables(self, context: Mapping[str, str]) -> dict[str, object]:
        """The CEL activation: instance variables and the declared context keys."""
        return {
            "name": self.name,
            "addresses": list(self.ips),
            "subnets": [str(n) for n in self.subnets],
            "interfaces": list(self.interfaces),
            "labels": dict(self.labels),
            **context,
        }

    def variable(self, name: str) -> object:
        if name == "labels":
            return self.labels
        if name == "name":
            return self.name
        if name == "addresses":
            return list(self.ips)
        if name == "subnets":
            return [str(n) for n in self.subnets]
        return list(self.interfaces)

    def addresses(self) -> list[IPv4Address | IPv6Address]:
        return [ip_address(a) for a in self.ips]


def _show_label(labels: Mapping[str, str], key: str) -> str:
    return f"{key}={labels[key]}" if key in labels else f"no label {key}"


def instance_failure(match: Match, subject: Subject, variables: Mapping[str, str]) -> str | None:
    """Why the instance side of ``match`` fails (None: it holds), first failing part only.

    The instance side is everything but the context selector and a context-only condition,
    which the engine evaluates once per context.
    """
    failed = match.labels.first_failure(subject.labels)
    if failed is not None:
        return f"labels: needs {failed.describe()}, has {_show_label(subject.labels, failed.key)}"
    if match.names and not any(fnmatchcase(subject.name, g) for g in match.names):
        return f"names: {subject.name} matches none of {', '.join(match.names)}"
    if match.subnets and not subject.in_any(match.subnets):
        return (
            f"subnets: no address ({', '.join(subject.ips) or 'none'}) in "
            f"{', '.join(str(n) for n in match.subnets)}"
        )
    if match.interfaces and not match.interfaces & set(subject.interfaces):
        return (
            f"interfaces: has {', '.join(subject.interfaces) or 'none'}, needs one of "
            f"{', '.join(sorted(match.interfaces))}"
        )
    if match.when is not None and not match.when.context_only:
        result, error = match.when.evaluate(subject.variables(variables))
        if error is not None:
            return f"when: {match.when.source} could not be evaluated: {error}"
        if not result:
            return f"when: {match.when.source} is false"
    return None


def context_failure(
    match: Match, context: Mapping[str, str], variables: Mapping[str, str]
) -> str | None:
    """Why the context side of ``match`` fails (None: it holds).

    ``context`` holds the keys that are set (or have a default), for selectors; ``variables``
    every declared key, unset ones as "", for conditions.
    """
    failed = match.context.first_failure(context)
    if failed is not None:
        shown = f"{failed.key}={context[failed.key]}" if failed.key in context else "unset"
        return f"context: needs {failed.describe()}, is {shown}"
    if match.when is not None and match.when.context_only:
        result, error = match.when.evaluate(variables)
        if error is not None:
            return f"when: {match.when.source} could not be evaluated: {error}"
        if not result:
            return f"when: {match.when.source} is false"
    return None
