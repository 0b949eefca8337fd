"""Rules that can never assign their persona: shadowed by an earlier rule, or self-contradicting.

Rules are ordered and the first match wins, so a rule whose every possible match is already
matched by an earlier rule is dead: usually a mistake in the order, or two rules for the same
instances that disagree. The check is conservative (it may miss a shadowing it cannot prove,
e.g. between two different CEL conditions) but never reports a rule that could still match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from netpersona.errors import FieldError
from netpersona.policy.selectors import Operator, Selector

if TYPE_CHECKING:  # document.py imports this module to run the analysis on what it parsed
    from netpersona.policy.document import ContextKey, Match, Policy, Rule

__all__ = ["covers", "never_matches", "unreachable_rules"]


def _glob_covers(earlier: str, later: str) -> bool:
    """Every name ``later`` matches, ``earlier`` matches: equal, ``*``, or a literal prefix."""
    if earlier in (later, "*"):
        return True
    prefix = earlier[:-1]
    return (
        earlier.endswith("*") and not any(c in prefix for c in "*?[") and later.startswith(prefix)
    )


def covers(earlier: Match, later: Match) -> bool:
    """True when every instance and context ``later`` matches, ``earlier`` matches too."""
    if not later.labels.implies(earlier.labels) or not later.context.implies(earlier.context):
        return False
    if earlier.names and not (
        later.names and all(any(_glob_covers(e, n) for e in earlier.names) for n in later.names)
    ):
        return False
    if earlier.subnets and not (
        later.subnets
        and all(
            any(s.version == e.version and s.subnet_of(e) for e in earlier.subnets)  # type: ignore[arg-type]
            for s in later.subnets
        )
    ):
        return False
    if earlier.interfaces and not (later.interfaces and later.interfaces <= earlier.interfaces):
        return False
    if earlier.when is None:
        return True
    return later.when is not None and later.when.source.strip() == earlier.when.source.strip()


def _context_contradiction(selector: Selector, declared: Mapping[str, ContextKey]) -> str | None:
    for requirement in selector.requirements:
        key = declared.get(requirement.key)
        if key is None or key.values is None:
            continue
        if requirement.operator is Operator.IN and not requirement.values & key.values:
            return (
                f"context {requirement.describe()} asks for a value {requirement.key} never "
                f"takes (declared: {', '.join(sorted(key.values))})"
            )
        if requirement.operator is Operator.DOES_NOT_EXIST and key.default is not None:
            return f"context key {requirement.key} always has a value (its default)"
    return None


def never_matches(match: Match, declared: Mapping[str, ContextKey]) -> str | None:
    """Why no instance in no context can meet ``match``, or None."""
    return (
        match.labels.contradiction()
        or match.context.contradiction()
        or _context_contradiction(match.context, declared)
    )


def _could_cover(
    rules: Sequence[Rule], index: dict[str, dict[str, list[int]]], free: list[int], later: Match
) -> list[int]:
    """Earlier rules that may cover ``later``: an earlier rule anchored on ``k In S`` can only
    cover a rule that has ``k In V`` with V inside S, so it is filed under one value of V."""
    found = list(free)
    for requirement in later.labels.requirements:
        if requirement.operator is Operator.IN:
            some_value = min(requirement.values)
            found.extend(index.get(requirement.key, {}).get(some_value, ()))
    return sorted(set(found))


def unreachable_rules(policy: Policy) -> list[FieldError]:
    errors: list[FieldError] = []
    declared = dict(policy.context)
    anchored: dict[str, dict[str, list[int]]] = {}
    free: list[int] = []
    for index, rule in enumerate(policy.rules):
        why = never_matches(rule.match, declared)
        if why:
            errors.append(
                FieldError(f"{rule.pointer}/match", f"rule {rule.name} never matches: {why}")
            )
        else:
            for position in _could_cover(policy.rules, anchored, free, rule.match):
                earlier = policy.rules[position]
                if covers(earlier.match, rule.match):
                    verdict = (
                        "which assigns the same persona (the later rule is redundant)"
                        if earlier.persona == rule.persona
                        else f"which assigns {earlier.persona}, not {rule.persona}"
                    )
                    errors.append(
                        FieldError(
                            rule.pointer,
                            f"rule {rule.name} is unreachable: every instance it matches is "
                            f"first matched by rule {earlier.name} at {earlier.pointer}, {verdict}",
                        )
                    )
                    break
        anchor = rule.match.labels.anchors()
        if anchor is None:
            free.append(index)
        else:
            key, values = anchor
            for value in values:
                anchored.setdefault(key, {}).setdefault(value, []).append(index)
    for overlay in policy.overlays:
        why = never_matches(overlay.match, declared)
        if why:
            errors.append(
                FieldError(
                    f"{overlay.pointer}/match", f"overlay {overlay.name} never applies: {why}"
                )
            )
    return errors
