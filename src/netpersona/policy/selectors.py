"""Label selectors as Kubernetes writes them: ``matchLabels`` and ``matchExpressions``.

A selector is an AND of requirements. ``matchLabels: {app: web}`` is the requirement
``app In [web]``. ``In`` needs the key present with one of the values; ``NotIn`` is true when the
key is absent or has none of the values; ``Exists`` and ``DoesNotExist`` look at the key only.
That is the semantics of Kubernetes label selectors (``k8s.io/apimachinery`` labels package), so
operators who know one know the other.

Besides matching, a selector can say whether it *implies* another (every label set matching it
also matches the other), which the shadowing analysis needs, and whether it can match anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Operator", "Requirement", "Selector"]


class Operator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"

    @property
    def takes_values(self) -> bool:
        return self in (Operator.IN, Operator.NOT_IN)


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.operator is Operator.IN:
            return value is not None and value in self.values
        if self.operator is Operator.NOT_IN:
            return value is None or value not in self.values
        if self.operator is Operator.EXISTS:
            return value is not None
        return value is None

    def implies(self, other: Requirement) -> bool:
        """True when every label set meeting ``self`` also meets ``other`` (same key only)."""
        if self.key != other.key:
            return False
        mine, theirs = self.operator, other.operator
        if theirs is Operator.IN:
            return mine is Operator.IN and self.values <= other.values
        if theirs is Operator.EXISTS:
            return mine in (Operator.IN, Operator.EXISTS)
        if theirs is Operator.DOES_NOT_EXIST:
            return mine is Operator.DOES_NOT_EXIST
        # other is NotIn S: met when the key is absent or outside S.
        if mine is Operator.IN:
            return not self.values & other.values
        if mine is Operator.NOT_IN:
            return self.values >= other.values
        return mine is Operator.DOES_NOT_EXIST

    def describe(self) -> str:
        if self.operator is Operator.EXISTS:
            return f"{self.key} exists"
        if self.operator is Operator.DOES_NOT_EXIST:
            return f"{self.key} does not exist"
        values = ", ".join(sorted(self.values))
        if self.operator is Operator.IN and len(self.values) == 1:
            return f"{self.key}={values}"
        return f"{self.key} {self.operator.value} [{values}]"


@dataclass(frozen=True, slots=True)
class Selector:
    """An AND of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(r.key for r in self.requirements)

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def first_failure(self, labels: Mapping[str, str]) -> Requirement | None:
        for requirement in self.requirements:
            if not requirement.matches(labels):
                return requirement
        return None

    def implies(self, other: Selector) -> bool:
        """True when every label set this selector matches, ``other`` matches too.

        Conservative: a False may be a missed implication, never a wrong one. Each requirement
        of ``other`` must follow from a single requirement of ``self``, which covers the cases
        operators write (a narrower ``In``, an added requirement, a repeated selector).
        """
        return all(
            any(mine.implies(theirs) for mine in self.requirements) for theirs in other.requirements
        )

    def contradiction(self) -> str | None:
        """Why no label set can match, or None when some can (exact, not conservative)."""
        by_key: dict[str, list[Requirement]] = {}
        for requirement in self.requirements:
            by_key.setdefault(requirement.key, []).append(requirement)
        for key, reqs in by_key.items():
            ops = {r.operator for r in reqs}
            absent_ok = Operator.IN not in ops and Operator.EXISTS not in ops
            if Operator.DOES_NOT_EXIST in ops and not absent_ok:
                return f"{key} must both exist and not exist"
            if Operator.DOES_NOT_EXIST in ops:
                continue
            allowed: frozenset[str] | None = None
            for r in reqs:
                if r.operator is Operator.IN:
                    allowed = r.values if allowed is None else allowed & r.values
            if allowed is None:
                continue
            for r in reqs:
                if r.operator is Operator.NOT_IN:
                    allowed = allowed - r.values
            if not allowed:
                return f"no value of {key} meets {' and '.join(r.describe() for r in reqs)}"
        return None

    def anchors(self) -> tuple[str, frozenset[str]] | None:
        """An ``In`` requirement to index on: a label set must have one of these values."""
        best: Requirement | None = None
        for requirement in self.requirements:
            if requirement.operator is Operator.IN and (
                best is None or len(requirement.values) < len(best.values)
            ):
                best = requirement
        return None if best is None else (best.key, best.values)

    def describe(self) -> str:
        return ", ".join(r.describe() for r in self.requirements) or "(any)"
