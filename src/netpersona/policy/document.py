"""The policy document: parse and validate it into a frozen :class:`Policy`.

    persona_policy:
      context:                       # the network context keys the policy reads
        threat_level: {values: [low, elevated, high], default: low}
      rules:                         # ordered: the first that matches assigns its persona
        - name: database
          persona: db-restricted
          match:
            matchLabels: {app: postgres}
            matchExpressions: [{key: env, operator: In, values: [prod]}]
            names: ["db-*"]          # globs on the instance name (any of)
            subnets: [10.0.2.0/24]   # an instance address inside one of them
            interfaces: [eth1]       # an interface with one of these names
            context: {matchLabels: {site: lab}}
          when: 'threat_level != "high"'    # CEL (netpersona.policy.conditions)
      default: dev-sandbox           # or null: unmatched instances get no persona
      overlays:                      # every matching overlay applies, in order
        - name: high-threat
          when: 'threat_level == "high"'
          set: {security_profile: high, allowed_protocols: [https, ssh]}

As with personas, validation reports every problem at once, each with an RFC 6901 pointer into
the document as written; persona names are checked against the catalog when one is given, and
rules that can never match (shadowed by an earlier rule, or contradicting themselves) are errors
(:mod:`netpersona.policy.analysis`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any

from netpersona.errors import InvalidDocument
from netpersona.model.checks import Checker, escape_pointer
from netpersona.model.jsontree import check_tree, with_json_problems
from netpersona.model.labels import check_label_key, check_label_value, check_persona_name
from netpersona.model.limits import POLICY_LIMITS
from netpersona.model.parse import parse_persona
from netpersona.model.persona import CommunicationMode
from netpersona.model.protocols import ProtocolEntry, parse_protocol
from netpersona.model.quote import quote
from netpersona.policy.analysis import unreachable_rules
from netpersona.policy.conditions import (
    INSTANCE_VARIABLES,
    RESERVED_WORDS,
    Condition,
    ConditionCompiler,
    ConditionError,
)
from netpersona.policy.selectors import Operator, Requirement, Selector

__all__ = [
    "ContextKey",
    "Match",
    "Overlay",
    "OverlaySet",
    "Policy",
    "Rule",
    "parse_policy",
]

TOP_KEYS = ("context", "rules", "default", "overlays", "description")
RULE_KEYS = ("name", "description", "persona", "match", "when")
OVERLAY_KEYS = ("name", "description", "match", "when", "enforce", "override", "set")
MATCH_KEYS = ("matchLabels", "matchExpressions", "names", "subnets", "interfaces", "context")
SELECTOR_KEYS = ("matchLabels", "matchExpressions")
SET_KEYS = (
    "persona",
    "communication_mode",
    "security_profile",
    "allowed_protocols",
    "remove_protocols",
    "priority",
    "qos_parameters",
    "multicast_groups",
    "peers",
)
MAX_RULES = 10_000
_CONTEXT_KEY = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_IFNAME = re.compile(r"[^/\s:]{1,15}")  # IFNAMSIZ is 16 with the NUL (netdevice(7))
# What a tighten-only overlay may move the mode to: never away from restricted, never back to
# broadcast or multicast (spec section 5: unicast drops both, restricted also limits outbound).
MODE_RANK = {
    CommunicationMode.BROADCAST: 0,
    CommunicationMode.MULTICAST: 0,
    CommunicationMode.UNICAST: 1,
    CommunicationMode.RESTRICTED: 2,
}


@dataclass(frozen=True, slots=True)
class ContextKey:
    name: str
    values: frozenset[str] | None = None  # None: any string
    default: str | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """An AND of everything given; an empty match selects every instance."""

    labels: Selector = field(default_factory=Selector)
    names: tuple[str, ...] = ()
    subnets: tuple[IPv4Network | IPv6Network, ...] = ()
    interfaces: frozenset[str] = frozenset()
    context: Selector = field(default_factory=Selector)
    when: Condition | None = None

    @property
    def context_keys(self) -> frozenset[str]:
        keys = self.context.keys
        return keys | self.when.context_keys if self.when else keys


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    persona: str
    match: Match
    pointer: str


@dataclass(frozen=True, slots=True)
class OverlaySet:
    """What an overlay changes. ``fields`` holds the persona fields as written (validated)."""

    persona: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict, compare=False)
    remove_protocols: tuple[ProtocolEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class Overlay:
    name: str
    match: Match
    changes: OverlaySet
    enforce: bool
    override: bool
    pointer: str


@dataclass(frozen=True, slots=True)
class Policy:
    rules: tuple[Rule, ...]
    default: str | None
    overlays: tuple[Overlay, ...]
    context: Mapping[str, ContextKey] = field(default_factory=dict, compare=False)
    document: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def personas(self) -> frozenset[str]:
        """Every persona the policy can hand out."""
        names = {r.persona for r in self.rules}
        names.update(o.changes.persona for o in self.overlays if o.changes.persona)
        if self.default:
            names.add(self.default)
        return frozenset(names)

    def context_problem(self, key: str, value: str) -> str | None:
        """Why ``value`` may not be set for the declared context key ``key`` (None: it may)."""
        declared = self.context.get(key)
        if declared is None or declared.values is None or value in declared.values:
            return None
        return (
            f"{quote(value)} is not a value of context key {key} "
            f"(expected one of {', '.join(sorted(declared.values))})"
        )


class _Parser(Checker):
    def __init__(self, personas: Collection[str] | None) -> None:
        super().__init__()
        self.personas = personas
        self.compiler: ConditionCompiler | None = None
        self.context: dict[str, ContextKey] = {}

    def persona_ref(self, at: str, value: object) -> str | None:
        name = self.persona_name(at, value)
        if name is not None and self.personas is not None and name not in self.personas:
            self.error(at, f"persona {quote(name)} does not exist")
            return None
        return name

    # --- context declarations -------------------------------------------------------------

    def context_keys(self, at: str, value: object) -> None:
        body = self.mapping(at, value)
        for key, spec in (body or {}).items():
            where = f"{at}/{escape_pointer(str(key))}"
            if not isinstance(key, str) or not _CONTEXT_KEY.fullmatch(key):
                self.error(
                    where,
                    f"{quote(key)} is not a usable context key (lower-case letters, digits and "
                    "'_', not starting with a digit: it is a variable in conditions)",
                )
                continue
            if key in INSTANCE_VARIABLES or key in RESERVED_WORDS:
                self.error(where, f"{quote(key)} is reserved (an instance variable or CEL word)")
                continue
            mapping = self.mapping(where, {} if spec is None else spec)
            if mapping is None:
                continue
            self.keys(mapping, where, ("values", "default", "description"))
            values: frozenset[str] | None = None
            if "values" in mapping:
                items = self.strings(f"{where}/values", mapping["values"])
                values = frozenset(items) if items is not None else None
            default = mapping.get("default")
            if default is not None:
                problem = check_label_value(default)
                if problem:
                    self.error(f"{where}/default", problem)
                    default = None
                elif values is not None and default not in values:
                    self.error(
                        f"{where}/default",
                        f"{quote(default)} is not one of the declared values "
                        f"({', '.join(sorted(values))})",
                    )
            self.context[key] = ContextKey(key, values, default)

    # --- matches ------------------------------------------------------------------------------

    def selector(self, at: str, body: Mapping[str, Any], context: bool) -> Selector:
        requirements: list[Requirement] = []
        if "matchLabels" in body:
            labels = self.mapping(f"{at}/matchLabels", body["matchLabels"])
            for key, value in (labels or {}).items():
                where = f"{at}/matchLabels/{escape_pointer(str(key))}"
                if self.label_key(where, key, context) and self.label_value(where, value):
                    requirements.append(Requirement(key, Operator.IN, frozenset([value])))
        if "matchExpressions" in body:
            where = f"{at}/matchExpressions"
            for index, item in enumerate(self.sequence(where, body["matchExpressions"]) or ()):
                requirement = self.expression(f"{where}/{index}", item, context)
                if requirement is not None:
                    requirements.append(requirement)
        return Selector(tuple(requirements))

    def label_key(self, at: str, key: object, context: bool) -> bool:
        if context:
            if not isinstance(key, str) or key not in self.context:
                self.error(
                    at, f"context key {quote(key)} is not declared (declare it under /context)"
                )
                return False
            return True
        problem = check_label_key(key)
        if problem:
            self.error(at, problem)
        return problem is None

    def label_value(self, at: str, value: object) -> bool:
        problem = check_label_value(value)
        if problem:
            self.error(at, problem)
        return problem is None

    def expression(self, at: str, item: object, context: bool) -> Requirement | None:
        body = self.mapping(at, item)
        if body is None:
            return None
        self.keys(body, at, ("key", "operator", "values"))
        key = body.get("key")
        if not self.label_key(f"{at}/key", key, context):
            return None
        assert isinstance(key, str)
        raw_op = body.get("operator")
        try:
            operator = Operator(str(raw_op))
        except ValueError:
            choices = ", ".join(o.value for o in Operator)
            self.error(f"{at}/operator", f"{quote(raw_op)} is not an operator ({choices})")
            return None
        values: frozenset[str] = frozenset()
        if operator.takes_values:
            items = self.strings(f"{at}/values", body.get("values"))
            if items is None:
                return None
            if not all(self.label_value(f"{at}/values/{i}", v) for i, v in enumerate(items)):
                return None
            values = frozenset(items)
        elif "values" in body:
            self.error(f"{at}/values", f"{operator.value} takes no values")
            return None
        return Requirement(key, operator, values)

    def match(self, at: str, value: object, when: object) -> Match:
        body = self.mapping(at, {} if value is None else value) or {}
        self.keys(body, at, MATCH_KEYS)
        labels = self.selector(at, body, context=False)
        names: tuple[str, ...] = ()
        if "names" in body:
            names = tuple(self.strings(f"{at}/names", body["names"]) or ())
        subnets: list[IPv4Network | IPv6Network] = []
        for index, text in enumerate(
            self.strings(f"{at}/subnets", body["subnets"]) or () if "subnets" in body else ()
        ):
            try:
                subnets.append(ip_network(text, strict=True))
            except ValueError as exc:
                self.error(f"{at}/subnets/{index}", f"{quote(text)} is not a network ({exc})")
        interfaces: list[str] = []
        if "interfaces" in body:
            for index, name in enumerate(
                self.strings(f"{at}/interfaces", body["interfaces"]) or ()
            ):
                if _IFNAME.fullmatch(name):
                    interfaces.append(name)
                else:
                    self.error(
                        f"{at}/interfaces/{index}", f"{quote(name)} is not an interface name"
                    )
        context = Selector()
        if "context" in body:
            inner = self.mapping(f"{at}/context", body["context"])
            if inner is not None:
                self.keys(inner, f"{at}/context", SELECTOR_KEYS)
                context = self.selector(f"{at}/context", inner, context=True)
        condition = None
        if when is not None:
            assert self.compiler is not None
            where = at.rsplit("/", 1)[0] + "/when"
            try:
                condition = self.compiler.compile(when)
            except ConditionError as exc:
                self.error(where, f"{quote(when)} {exc}")
        return Match(
            labels=labels,
            names=names,
            subnets=tuple(subnets),
            interfaces=frozenset(interfaces),
            context=context,
            when=condition,
        )

    # --- rules and overlays ---------------------------------------------------------------

    def name(self, at: str, value: object, seen: dict[str, str]) -> str:
        problem = check_persona_name(value)
        if problem:
            self.error(at, problem.replace("persona name", "name"))
            return ""
        assert isinstance(value, str)
        if value in seen:
            self.error(at, f"{quote(value)} is used twice (first at {seen[value]})")
        seen[value] = at
        return value

    def entries(
        self, at: str, value: object, what: str, keys: tuple[str, ...], required: tuple[str, ...]
    ) -> Iterator[tuple[str, Mapping[str, Any], str]]:
        """Each well-formed entry of a list of rules or overlays: pointer, body, unique name."""
        seen: dict[str, str] = {}
        for index, item in enumerate(
            self.sequence(at, value, f"a list of {what}", MAX_RULES) or ()
        ):
            where = f"{at}/{index}"
            body = self.mapping(where, item)
            if body is None:
                continue
            self.keys(body, where, keys)
            self.required(body, where, required)
            name = self.name(f"{where}/name", body["name"], seen) if "name" in body else ""
            yield where, body, name

    def rules(self, at: str, value: object) -> tuple[Rule, ...]:
        rules = []
        for where, body, name in self.entries(at, value, "rules", RULE_KEYS, ("name", "persona")):
            persona = (
                self.persona_ref(f"{where}/persona", body["persona"]) if "persona" in body else None
            )
            match = self.match(f"{where}/match", body.get("match"), body.get("when"))
            if name and persona:
                rules.append(Rule(name, persona, match, where))
        return tuple(rules)

    def overlays(self, at: str, value: object) -> tuple[Overlay, ...]:
        overlays = []
        for where, body, name in self.entries(at, value, "overlays", OVERLAY_KEYS, ("name", "set")):
            enforce, override = (
                self.boolean(f"{where}/{flag}", body.get(flag, False)) is True
                for flag in ("enforce", "override")
            )
            match = self.match(f"{where}/match", body.get("match"), body.get("when"))
            changes = (
                self.overlay_set(f"{where}/set", body["set"], override) if "set" in body else None
            )
            if name and changes is not None:
                overlays.append(Overlay(name, match, changes, enforce, override, pointer=where))
        return tuple(overlays)

    def overlay_set(self, at: str, value: object, override: bool) -> OverlaySet | None:
        body = self.mapping(at, value)
        if body is None:
            return None
        if not body:
            self.error(at, "an overlay must change something")
            return None
        before = len(self.errors)
        for key in body:
            if key not in SET_KEYS:
                self.error(
                    f"{at}/{escape_pointer(str(key))}",
                    f"unknown key {quote(key)} (expected one of {', '.join(SET_KEYS)})",
                )
        persona = None
        if "persona" in body:
            persona = self.persona_ref(f"{at}/persona", body["persona"])
            if not override:
                self.error(
                    f"{at}/persona",
                    "replacing the persona can loosen it; mark the overlay override: true",
                )
        removed: list[ProtocolEntry] = []
        if "remove_protocols" in body:
            texts = self.strings(f"{at}/remove_protocols", body["remove_protocols"]) or ()
            for index, text in enumerate(texts):
                entry = self.convert(f"{at}/remove_protocols/{index}", text, parse_protocol)
                removed += [entry] if entry is not None else []
        fields = {
            k: copy.deepcopy(v)
            for k, v in body.items()
            if k in SET_KEYS[1:] and k != "remove_protocols"
        }
        self.persona_fields(at, fields, override)
        if len(self.errors) != before:
            return None
        return OverlaySet(persona=persona, fields=fields, remove_protocols=tuple(removed))

    def persona_fields(self, at: str, fields: dict[str, Any], override: bool) -> None:
        """Check the persona fields an overlay sets as a persona would check them."""
        filler = {
            "communication_mode": "unicast",
            "security_profile": "low",
            "allowed_protocols": [],
            "priority": 0,
        }
        checked = dict(fields)
        qos = fields.get("qos_parameters")
        if not override and isinstance(qos, Mapping) and "burst" in qos:
            # A burst cap alone is fine in a tighten-only overlay: it lowers the persona's own.
            checked["qos_parameters"] = {"ingress_rate": "100gbit", **qos}
        try:
            parse_persona({**filler, **checked})
        except InvalidDocument as exc:
            for error in exc.errors:
                self.error(f"{at}{error.pointer}", error.message)
            return
        if override:
            return
        mode = fields.get("communication_mode")
        if mode is not None and MODE_RANK[CommunicationMode(mode)] == 0:
            self.error(
                f"{at}/communication_mode",
                f"{quote(mode)} is not a tightening (a tighten-only overlay moves the mode "
                "toward unicast or restricted); mark the overlay override: true",
            )
        if "multicast_groups" in fields:
            self.error(
                f"{at}/multicast_groups",
                "adding multicast groups is not a tightening; mark the overlay override: true",
            )
        if "dscp" in fields.get("qos_parameters", {}):
            self.error(
                f"{at}/qos_parameters/dscp",
                "a DSCP has no tighter direction; mark the overlay override: true",
            )


def _policy(p: _Parser, at: str, mapping: Mapping[str, Any]) -> Policy:
    p.keys(mapping, at, TOP_KEYS)
    if "context" in mapping:
        p.context_keys(f"{at}/context", mapping["context"])
    p.compiler = ConditionCompiler(p.context)
    if "rules" not in mapping:
        p.error(f"{at}/rules", "rules is required (it may be an empty list)")
    rules = p.rules(f"{at}/rules", mapping.get("rules", []))
    default = None
    if mapping.get("default") is not None:
        default = p.persona_ref(f"{at}/default", mapping["default"])
    overlays = p.overlays(f"{at}/overlays", mapping["overlays"]) if "overlays" in mapping else ()
    return Policy(
        rules=rules,
        default=default,
        overlays=overlays,
        context=dict(p.context),
        document=copy.deepcopy(dict(mapping)),
    )


def parse_policy(document: object, personas: Collection[str] | None = None) -> Policy:
    """Validate a policy document; with ``personas`` (the catalog's names), check references.

    Raises :class:`InvalidDocument` listing every problem, including rules that can never match.
    """
    not_json = check_tree(document, POLICY_LIMITS)
    p = _Parser(personas)
    at, mapping = p.unwrap(document, "persona_policy", "a mapping (the persona_policy)")
    policy = _policy(p, at, mapping) if mapping is not None else None
    p.errors = with_json_problems(p.errors, not_json, mapping, at, POLICY_LIMITS)
    if policy is not None and not p.errors:
        p.errors.extend(unreachable_rules(policy))
    if p.errors or policy is None:
        p.fail()
    return policy
