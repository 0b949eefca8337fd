"""The engine decides exactly as a plain reading of the policy does, on random policies and fleets.

The reference below walks every rule and overlay against the whole instance with nothing
cached, nothing projected and no index: first matching rule wins, every matching overlay
applies. Random policies mix what the engine treats per signature (selectors, subnets,
interfaces, context, label-only conditions) with what it settles per instance (name globs,
conditions reading the name, addresses, subnets or interfaces), so both paths and their mix
are compared, from scratch and after incremental changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from ipaddress import ip_address
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netpersona.errors import InvalidDocument
from netpersona.policy import (
    Change,
    ContextChanged,
    DecisionSource,
    InstanceUpserted,
    LabelsChanged,
    Match,
    Policy,
    PolicyEngine,
    parse_policy,
)
from netpersona.policy.decision import Decision
from netpersona.records import Instance, Interface, PersonaVersion

PERSONAS = ("a", "b", "c")
LABELS = {"app": ("web", "db", "api"), "env": ("prod", "dev"), "tier": ("front", "back")}
CONTEXT = {"threat_level": ("low", "high"), "site": ("lab", "prod")}
IDS = [f"vm-{n}" for n in range(12)]
NAMES = ("web-1", "web-canary", "db-1", "db-2", "api-x", "edge")
SUBNETS = ("10.0.1.0/24", "10.0.0.0/16", "10.1.0.0/16", "10.0.1.128/25")
CONDITIONS = (
    'threat_level == "high"',  # context only
    'labels.?tier.orValue("") == "front"',  # a label
    'labels.?app.orValue("") == "web" || threat_level == "low"',  # a label and the context
    'name.endsWith("-canary")',  # the name
    'name.startsWith("db") && threat_level != "high"',  # the name and the context
    'addresses.exists(a, a.startsWith("10.0.1."))',  # the addresses
    '"10.1.0.0/16" in subnets',  # the interface subnets
    '"eth1" in interfaces',  # the interface names
    "size(labels) > 2",  # every label
    'labels.env == "prod"',  # an evaluation error when env is absent: no match
)


def _catalog() -> dict[str, PersonaVersion]:
    return {
        name: PersonaVersion.of(
            name,
            1,
            {
                "communication_mode": "unicast",
                "security_profile": "low",
                "allowed_protocols": ["https", "ssh"],
                "priority": 3,
            },
        )
        for name in (*PERSONAS, "quarantine")
    }


@st.composite
def selectors(draw: st.DrawFn) -> dict[str, Any]:
    selector: dict[str, Any] = {}
    if draw(st.booleans()):
        key = draw(st.sampled_from(sorted(LABELS)))
        selector["matchLabels"] = {key: draw(st.sampled_from(LABELS[key]))}
    expressions = []
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(sorted(LABELS)))
        operator = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
        expression: dict[str, Any] = {"key": key, "operator": operator}
        if operator in ("In", "NotIn"):
            values = draw(st.sets(st.sampled_from(LABELS[key]), min_size=1))
            expression["values"] = sorted(values)
        expressions.append(expression)
    if expressions:
        selector["matchExpressions"] = expressions
    return selector


@st.composite
def matches(draw: st.DrawFn) -> dict[str, Any]:
    match = draw(selectors())
    if draw(st.integers(0, 3)) == 0:
        match["names"] = draw(
            st.lists(
                st.sampled_from(["web-*", "db-?", "*-canary", "edge"]),
                min_size=1,
                max_size=2,
                unique=True,
            )
        )
    if draw(st.integers(0, 3)) == 0:
        match["subnets"] = draw(
            st.lists(st.sampled_from(SUBNETS), min_size=1, max_size=2, unique=True)
        )
    if draw(st.integers(0, 4)) == 0:
        match["interfaces"] = draw(
            st.lists(st.sampled_from(["eth0", "eth1"]), min_size=1, unique=True)
        )
    if draw(st.integers(0, 4)) == 0:
        key = draw(st.sampled_from(sorted(CONTEXT)))
        match["context"] = {"matchLabels": {key: draw(st.sampled_from(CONTEXT[key]))}}
    return match


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    rules = []
    for n in range(draw(st.integers(0, 7))):
        rule: dict[str, Any] = {
            "name": f"r{n}",
            "persona": draw(st.sampled_from(PERSONAS)),
            "match": draw(matches()),
        }
        if draw(st.booleans()):
            rule["when"] = draw(st.sampled_from(CONDITIONS))
        rules.append(rule)
    overlays = []
    for n in range(draw(st.integers(0, 3))):
        overlay: dict[str, Any] = {"name": f"o{n}", "match": draw(matches())}
        if draw(st.booleans()):
            overlay["when"] = draw(st.sampled_from(CONDITIONS))
        if draw(st.booleans()):
            overlay["set"] = {"security_profile": "high"}
        else:
            overlay.update(
                override=True, enforce=draw(st.booleans()), set={"persona": "quarantine"}
            )
        overlays.append(overlay)
    return _parse_dropping_refused(rules, overlays, draw(st.sampled_from([None, "c"])))


def _parse_dropping_refused(
    rules: list[dict[str, Any]], overlays: list[dict[str, Any]], default: str | None
) -> Policy:
    """The policy without the rules and overlays it refuses (shadowed, self-contradicting):
    random rules often shadow each other, and refusing them is not what is tested here."""
    while True:
        document = {
            "persona_policy": {
                "context": {
                    "threat_level": {"values": list(CONTEXT["threat_level"]), "default": "low"},
                    "site": {"values": list(CONTEXT["site"])},
                },
                "rules": rules,
                "default": default,
                "overlays": overlays,
            }
        }
        try:
            return parse_policy(document, _catalog())
        except InvalidDocument as exc:
            refused = {tuple(e.pointer.split("/")[2:4]) for e in exc.errors}
            rules = [r for n, r in enumerate(rules) if ("rules", str(n)) not in refused]
            overlays = [o for n, o in enumerate(overlays) if ("overlays", str(n)) not in refused]


@st.composite
def instances(draw: st.DrawFn, instance_id: str) -> Instance:
    labels = {}
    for key, values in LABELS.items():
        if draw(st.booleans()):
            labels[key] = draw(st.sampled_from(values))
    if draw(st.booleans()):
        labels["serial"] = draw(st.sampled_from(["1", "2", "3"]))  # read only by size(labels)
    address = draw(st.sampled_from(["10.0.1.5", "10.0.1.200", "10.0.2.7", "10.1.3.4", "fd00::1"]))
    prefix = 64 if ":" in address else 24
    interface = draw(st.sampled_from(["eth0", "eth1"]))
    return Instance(
        instance_id,
        draw(st.sampled_from(NAMES)),
        (address,),
        (Interface(interface, (f"{address}/{prefix}",)),),
        tuple(sorted(labels.items())),
        draw(st.sampled_from([None, None, None, None, "b"])),
    )


def _holds(match: Match, instance: Instance, context: Mapping[str, str]) -> bool:
    labels = dict(instance.labels)
    variables = dict.fromkeys(CONTEXT, "") | dict(context)
    set_context = {k: v for k, v in variables.items() if v}
    if not match.labels.matches(labels) or not match.context.matches(set_context):
        return False
    if match.names and not any(fnmatchcase(instance.name, g) for g in match.names):
        return False
    addresses = [ip_address(a) for a in instance.ips()]
    if match.subnets and not any(a in net for a in addresses for net in match.subnets):
        return False
    if match.interfaces and not match.interfaces & set(instance.interface_names()):
        return False
    if match.when is None:
        return True
    result, error = match.when.evaluate(
        {
            "name": instance.name,
            "addresses": list(instance.ips()),
            "subnets": [str(n) for n in instance.subnets()],
            "interfaces": list(instance.interface_names()),
            "labels": labels,
            **variables,
        }
    )
    return error is None and result


def reference(policy: Policy, instance: Instance, context: Mapping[str, str]) -> tuple[Any, ...]:
    """(source, persona, rule, overlays applied) by reading the policy as written."""
    rule = None
    if instance.pin is None:
        rule = next((r for r in policy.rules if _holds(r.match, instance, context)), None)
    if instance.pin is not None:
        source, persona = DecisionSource.PIN, instance.pin
    elif rule is not None:
        source, persona = DecisionSource.RULE, rule.persona
    elif policy.default is not None:
        source, persona = DecisionSource.DEFAULT, policy.default
    else:
        return DecisionSource.NONE, None, None, ()
    overlays = tuple(
        o.name
        for o in policy.overlays
        if (instance.pin is None or o.enforce) and _holds(o.match, instance, context)
    )
    return source, persona, rule.name if rule else None, overlays


def _seen(decision: Decision) -> tuple[Any, ...]:
    return decision.source, decision.persona, decision.rule, decision.overlays


def _check(engine: PolicyEngine) -> None:
    context = {"threat_level": "low"} | dict(engine.context)
    for instance_id, instance in engine.instances.items():
        assert _seen(engine.decision(instance_id)) == reference(engine.policy, instance, context), (
            instance
        )
        assert engine.evaluate(instance) == engine.decision(instance_id)


@st.composite
def changes(draw: st.DrawFn) -> Change:
    kind = draw(st.integers(0, 2))
    if kind == 0:
        key = draw(st.sampled_from(sorted(CONTEXT)))
        return ContextChanged(key, draw(st.sampled_from([*CONTEXT[key], None])))
    instance_id = draw(st.sampled_from(IDS))
    if kind == 1:
        return InstanceUpserted(draw(instances(instance_id)))
    return LabelsChanged(instance_id, {"app": draw(st.sampled_from(LABELS["app"]))})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    policy=policies(),
    fleet=st.lists(st.sampled_from(IDS), unique=True, max_size=12).flatmap(
        lambda ids: st.tuples(*(instances(i) for i in ids))
    ),
    batches=st.lists(st.lists(changes(), min_size=1, max_size=3), max_size=4),
)
def test_the_engine_decides_as_the_policy_reads(
    policy: Policy, fleet: tuple[Instance, ...], batches: list[list[Change]]
) -> None:
    engine = PolicyEngine(policy, _catalog(), {"threat_level": "low"}, fleet)
    _check(engine)
    for drawn in batches:
        present = set(engine.instances)
        batch = [c for c in drawn if not isinstance(c, LabelsChanged) or c.instance_id in present]
        before = dict(engine.decisions)
        changed = engine.recompute(batch)
        _check(engine)
        assert changed == {i: d for i, d in engine.decisions.items() if before.get(i) != d}


def test_a_rename_settles_the_instance_again_under_a_rule_reading_the_name() -> None:
    document = {
        "persona_policy": {
            "rules": [{"name": "canary", "persona": "a", "when": 'name.endsWith("-canary")'}],
            "default": "b",
        }
    }
    fleet = [Instance("vm-1", "web-1"), Instance("vm-2", "web-2")]
    engine = PolicyEngine(parse_policy(document, _catalog()), _catalog(), {}, fleet)
    assert engine.signatures == 1  # the name is not part of the signature
    assert engine.decision("vm-1").persona == "b"
    changed = engine.recompute([InstanceUpserted(Instance("vm-1", "web-canary"))])
    assert {i: d.persona for i, d in changed.items()} == {"vm-1": "a"}
    assert engine.decision("vm-2").persona == "b"
    changed = engine.recompute([InstanceUpserted(Instance("vm-1", "web-1"))])
    assert {i: d.persona for i, d in changed.items()} == {"vm-1": "b"}
