"""A policy compiled for speed: indexes, signatures, and each match split in two.

The *signature* of an instance is its projection onto what many instances share and the policy
can tell apart:

* a label key a selector names counts only by the values selectors list (``zone NotIn
  [zone-0]`` sees zone-0, another value, or no label); a key a condition reads counts by value;
  every label when a condition reads ``labels`` as a whole;
* addresses count only by which policy subnets hold them, interfaces only by which of the
  interface names the policy lists they have; and the pin.

Each match is split accordingly: the *shared* side (label selectors, subnets, interfaces, the
context, a condition that reads only labels and context) is decided once per signature; the
*residual* (name globs, a condition that reads the name, addresses, subnets or interfaces) is
what only the instance itself can answer. A signature's :class:`Plan` lists the rules and
overlays whose shared side holds, up to the first rule with no residual; an instance of it is
settled by testing only those residuals. Instances whose plan has no residual share one
decision, computed once.

:mod:`netpersona.policy.matching` is the slow path that gives reasons; tests check that both
always agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from netpersona.policy.conditions import Condition
from netpersona.policy.document import Match, Policy
from netpersona.policy.selectors import Operator, Requirement
from netpersona.policy.subnets import Network, SubnetIndex
from netpersona.records import Instance

__all__ = ["CompiledMatch", "CompiledPolicy", "Plan", "Signature"]

# (projected labels, interfaces the policy names, policy subnets holding an address, pin)
Signature = tuple[Any, ...]
_NO_SUBNETS: frozenset[Network] = frozenset()
# Stands for "a value no selector lists": never equal to a label value (those cannot hold NUL).
OTHER = "\x00"
# The projected labels are one string, "key NUL value" pieces joined by SOH, in key order:
# hashed once and compared by memcmp when instances are grouped, where a tuple of pairs would
# be hashed pair by pair each time. Label keys and values cannot hold control characters.
_KEY_VALUE, _PAIRS = "\x00", "\x01"
# Label pairs whose projection is remembered; past this the memory is dropped and rebuilt
# (a label with a value per instance, e.g. a serial number, must not grow it without bound).
_PROJECTION_CACHE_LIMIT = 1 << 16


def _instance_variable(instance: Instance, name: str) -> object:
    """A CEL instance variable other than ``labels``, read from the instance itself."""
    if name == "name":
        return instance.name
    if name == "addresses":
        return list(instance.ips())
    if name == "subnets":
        return [str(n) for n in instance.subnets()]
    return list(instance.interface_names())


def _requirement_test(requirement: Requirement) -> tuple[str, int, frozenset[str]]:
    """(key, kind, values): kind 0 In, 1 NotIn, 2 Exists, 3 DoesNotExist."""
    kinds = {Operator.IN: 0, Operator.NOT_IN: 1, Operator.EXISTS: 2, Operator.DOES_NOT_EXIST: 3}
    return requirement.key, kinds[requirement.operator], requirement.values


def _labels_hold(
    tests: tuple[tuple[str, int, frozenset[str]], ...], labels: Mapping[str, str]
) -> bool:
    for key, kind, values in tests:
        value = labels.get(key)
        if kind == 0:
            if value is None or value not in values:
                return False
        elif kind == 1:
            if value is not None and value in values:
                return False
        elif (value is None) is (kind == 2):
            return False
    return True


@dataclass(frozen=True, slots=True)
class CompiledMatch:
    """One match, split into the side a signature decides and the residual an instance does."""

    labels: tuple[tuple[str, int, frozenset[str]], ...]
    subnets: tuple[Network, ...]
    interfaces: frozenset[str]
    shared_condition: Condition | None  # reads labels and context only (not context alone)
    names: tuple[str, ...]  # residual: globs on the instance name
    own_condition: Condition | None  # residual: reads the name, addresses, subnets, interfaces
    context_keys: frozenset[str]
    # The shared condition's results by the values it reads, when those are a few labels and
    # context keys: many signatures differ only in what the condition does not look at. The
    # keys are sorted once here, not per evaluation.
    memo_labels: tuple[str, ...] | None = None
    memo_context: tuple[str, ...] = ()
    memo: dict[tuple[Any, ...], bool] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, match: Match) -> CompiledMatch:
        when = match.when if match.when is not None and not match.when.context_only else None
        own = when is not None and not when.instance_variables <= {"labels"}
        shared = None if own else when
        memo_labels = None
        if shared is not None and shared.label_keys is not None:
            memo_labels = tuple(sorted(shared.label_keys))
        return cls(
            tuple(_requirement_test(r) for r in match.labels.requirements),
            match.subnets,
            match.interfaces,
            shared,
            match.names,
            when if own else None,
            match.context_keys,
            memo_labels,
            tuple(sorted(shared.context_keys)) if shared is not None else (),
        )

    @property
    def residual(self) -> bool:
        return bool(self.names) or self.own_condition is not None

    def shared_holds(
        self, labels: Mapping[str, str], signature: Signature, context: Mapping[str, str]
    ) -> bool:
        """The side every instance of ``signature`` answers alike (labels: its projection)."""
        if self.labels and not _labels_hold(self.labels, labels):
            return False
        if self.subnets and signature[2].isdisjoint(self.subnets):
            return False
        if self.interfaces and self.interfaces.isdisjoint(signature[1]):
            return False
        condition = self.shared_condition
        if condition is None:
            return True
        keys = self.memo_labels
        if keys is None:  # reads every label: no smaller key to remember it by
            return self._evaluate_shared(condition, labels, context)
        key = (*map(labels.get, keys), *map(context.__getitem__, self.memo_context))
        known = self.memo.get(key)
        if known is None:
            known = self.memo[key] = self._evaluate_shared(condition, labels, context)
        return known

    def _evaluate_shared(
        self, condition: Condition, labels: Mapping[str, str], context: Mapping[str, str]
    ) -> bool:
        activation: dict[str, object] = {"labels": labels}
        for name in self.memo_context:
            activation[name] = context[name]
        return _holds(condition, activation)

    def residual_holds(
        self, instance: Instance, labels: Mapping[str, str], context: Mapping[str, str]
    ) -> bool:
        """The per-instance side; ``labels`` is the signature's projection (what conditions
        may read of them)."""
        if self.names and not any(fnmatchcase(instance.name, g) for g in self.names):
            return False
        condition = self.own_condition
        if condition is None:
            return True
        activation: dict[str, object] = {}
        for name in condition.instance_variables:
            activation[name] = labels if name == "labels" else _instance_variable(instance, name)
        for name in condition.context_keys:
            activation[name] = context[name]
        return _holds(condition, activation)


def _holds(condition: Condition, activation: Mapping[str, object]) -> bool:
    result, error = condition.evaluate(activation)
    return error is None and result


@dataclass(frozen=True, slots=True)
class Plan:
    """What a signature decides, up to what only each instance can answer.

    Every member gets ``rule`` (-1: none) unless one of ``residual_rules``, which come before
    it in policy order, holds for it; it gets the ``overlays`` whose residual, if any, holds.
    """

    labels: Mapping[str, str]  # the projected labels residual conditions read
    pin: str | None
    rule: int
    residual_rules: tuple[int, ...]
    overlays: tuple[int, ...]
    residual_overlays: frozenset[int]
    context_keys: frozenset[str]  # of every rule and overlay examined

    @property
    def uniform(self) -> bool:
        """True when every member gets the same decision."""
        return not self.residual_rules and not self.residual_overlays


Index = tuple[dict[str, dict[str, list[int]]], list[int]]


def _index(matches: Iterable[Match]) -> Index:
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


def _candidates(index: Index, labels: Mapping[str, str]) -> list[int]:
    """The matches a label set could meet, in policy order (each at most once)."""
    anchor, free = index
    found = list(free)
    for key, by_value in anchor.items():
        value = labels.get(key)
        if value is not None:
            hit = by_value.get(value)
            if hit:
                found.extend(hit)
    found.sort()
    return found


def _label_projection(matches: list[Match]) -> tuple[dict[str, frozenset[str] | None], bool]:
    """The label values each key is told apart by (None: every value), and whether some
    condition reads every label."""
    projection: dict[str, frozenset[str] | None] = {}
    for match in matches:
        for requirement in match.labels.requirements:
            known = projection.get(requirement.key, frozenset())
            if known is not None:
                projection[requirement.key] = known | requirement.values
    whole = False
    for match in matches:
        if match.when is None:
            continue
        if match.when.label_keys is None:
            whole = True
        for key in match.when.label_keys or ():
            projection[key] = None  # a condition may compare it with anything
    return projection, whole


def _by_context(matches: list[Match]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for index, match in enumerate(matches):
        for key in match.context_keys:
            found.setdefault(key, []).append(index)
    return found


def _subnet_anchors(matches: list[Match]) -> frozenset[tuple[str, str]] | None:
    """The label pairs that let an instance meet a match on subnets (None: any instance may)."""
    pairs: set[tuple[str, str]] = set()
    for match in matches:
        if not match.subnets:
            continue
        anchored = match.labels.anchors()
        if anchored is None:
            return None
        key, values = anchored
        pairs.update((key, value) for value in values)
    return frozenset(pairs)


def _labels_of(projected: str) -> dict[str, str]:
    """The projected labels of a signature, as a mapping."""
    labels = {}
    for piece in projected.split(_PAIRS) if projected else ():
        key, _, value = piece.partition(_KEY_VALUE)
        labels[key] = value
    return labels


class _Projected(dict[tuple[str, str], str | None]):
    """A label pair -> the piece of the signature it makes (None: none), worked out once."""

    def __init__(self, projection: dict[str, frozenset[str] | None], whole: bool) -> None:
        super().__init__()
        self.projection = projection
        self.whole = whole

    def __missing__(self, pair: tuple[str, str]) -> str | None:
        key, value = pair
        kept: str | None = None
        if self.whole:
            kept = f"{key}{_KEY_VALUE}{value}"
        elif key in self.projection:
            values = self.projection[key]
            shown = value if values is None or value in values else OTHER
            kept = f"{key}{_KEY_VALUE}{shown}"
        if len(self) >= _PROJECTION_CACHE_LIMIT:
            self.clear()
        self[pair] = kept
        return kept


class CompiledPolicy:
    """The policy as indexes; rebuilt only when the policy changes."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        rules = [r.match for r in policy.rules]
        overlays = [o.match for o in policy.overlays]
        matches = rules + overlays
        self.rules = [CompiledMatch.of(m) for m in rules]
        self.overlays = [CompiledMatch.of(m) for m in overlays]
        self.enforced = frozenset(i for i, o in enumerate(policy.overlays) if o.enforce)
        self._projected = _Projected(*_label_projection(matches))
        self.interface_names = frozenset(n for m in matches for n in m.interfaces)
        self.subnets = SubnetIndex(net for m in matches for net in m.subnets)
        self.subnet_anchors = _subnet_anchors(matches)
        self.rule_index = _index(rules)
        self.overlay_index = _index(overlays)
        self.rules_by_context = _by_context(rules)
        self.overlays_by_context = _by_context(overlays)

    def signature(self, instance: Instance) -> Signature:
        # Few labels, sorted by key: the pieces are in key order too.
        labels = _PAIRS.join(filter(None, map(self._projected.__getitem__, instance.labels)))
        anchors = self.subnet_anchors
        needs_subnets = anchors is None or not anchors.isdisjoint(instance.labels)
        return (
            labels,
            self.interface_names.intersection(instance.interface_names())
            if self.interface_names
            else None,
            self.subnets.holding(instance) if needs_subnets else _NO_SUBNETS,
            instance.pin,
        )

    def plan(
        self,
        signature: Signature,
        rule_ok: list[bool],
        overlay_ok: list[bool],
        context: Mapping[str, str],
    ) -> Plan:
        """Walk the rules and overlays a signature can meet, once for all its members."""
        labels = _labels_of(signature[0])
        pin: str | None = signature[3]
        context_keys: set[str] = set()
        rule, residual_rules = -1, []
        if pin is None:
            for index in _candidates(self.rule_index, labels):
                compiled = self.rules[index]
                context_keys |= compiled.context_keys
                if rule_ok[index] and compiled.shared_holds(labels, signature, context):
                    if not compiled.residual:
                        rule = index
                        break
                    residual_rules.append(index)
        applied, residual_overlays = [], set()
        for index in _candidates(self.overlay_index, labels):
            if pin is not None and index not in self.enforced:
                continue
            compiled = self.overlays[index]
            context_keys |= compiled.context_keys
            if overlay_ok[index] and compiled.shared_holds(labels, signature, context):
                applied.append(index)
                if compiled.residual:
                    residual_overlays.add(index)
        return Plan(
            labels,
            pin,
            rule,
            tuple(residual_rules),
            tuple(applied),
            frozenset(residual_overlays),
            frozenset(context_keys),
        )

    def settle(
        self, plan: Plan, instance: Instance, context: Mapping[str, str]
    ) -> tuple[int, tuple[int, ...]]:
        """(rule, overlays) for one member of a plan's signature: only the residuals run."""
        rule = plan.rule
        for index in plan.residual_rules:
            if self.rules[index].residual_holds(instance, plan.labels, context):
                rule = index
                break
        applied = plan.overlays
        if plan.residual_overlays:
            applied = tuple(
                i
                for i in applied
                if i not in plan.residual_overlays
                or self.overlays[i].residual_holds(instance, plan.labels, context)
            )
        return rule, applied
