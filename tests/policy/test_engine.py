"""The engine as pure code: decisions, incremental recompute, and what a change may touch."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netpersona.errors import NotFound
from netpersona.policy import (
    Change,
    ContextChanged,
    DecisionSource,
    InstanceRemoved,
    InstanceUpserted,
    LabelsChanged,
    PersonaChanged,
    PinChanged,
    Policy,
    PolicyChanged,
    PolicyEngine,
    StepOutcome,
    parse_policy,
    what_if,
)
from netpersona.records import Instance, Interface, PersonaVersion

EXPECTED_LOW = {
    "web-1": ("web-frontend", "web"),
    "web-2": ("web-frontend", "web"),
    "api-1": ("api-server", "api"),
    "db-1": ("db-restricted", "database"),
    "disc-1": ("discovery", "discovery"),
    "disc-dev-1": ("discovery", "discovery"),
    "media-src-1": ("media-stream", "media-source"),
    "media-rx-1": ("media-receiver", "media-receiver"),
    "admin-ws-1": ("admin-workstation", "admin-workstation"),
    "dev-1": ("dev-sandbox", None),
    "legacy-web": ("web-frontend", None),
    "stray-db": ("dev-sandbox", None),
}


def test_every_example_instance_gets_its_persona(engine: PolicyEngine) -> None:
    got = {i: (d.persona, d.rule) for i, d in engine.decisions.items()}
    assert got == EXPECTED_LOW
    assert engine.decision("legacy-web").source is DecisionSource.PIN
    assert engine.decision("dev-1").source is DecisionSource.DEFAULT
    db = engine.decision("db-1").effective
    assert db is not None
    assert db.persona is not None
    assert db.persona.communication_mode == "restricted"
    assert db.document["peers"][0] == {"persona": "api-server"}


def test_raising_threat_level_changes_exactly_the_intended_instances(
    engine: PolicyEngine,
) -> None:
    changed = engine.recompute([ContextChanged("threat_level", "high")])
    # Everyone but the pinned VM, which only enforce overlays reach and which is not dev.
    assert set(changed) == set(EXPECTED_LOW) - {"legacy-web"}
    assert changed["disc-1"].persona == "dev-sandbox"  # discovery stops in production
    for dev in ("dev-1", "disc-dev-1", "stray-db"):
        effective = changed[dev].effective
        assert effective is not None
        assert effective.name == "quarantine"
    web = changed["web-1"].effective
    assert web is not None
    assert web.persona is not None
    assert web.persona.security_profile == "high"
    assert "http" not in web.document["allowed_protocols"]
    # Setting it again changes nothing; going back restores the first decisions.
    assert engine.recompute([ContextChanged("threat_level", "high")]) == {}
    back = engine.recompute([ContextChanged("threat_level", "low")])
    assert {i: (d.persona, d.rule) for i, d in back.items()} == {
        i: v for i, v in EXPECTED_LOW.items() if i != "legacy-web"
    }


def test_elevated_threat_spares_the_dev_vms_quarantine(engine: PolicyEngine) -> None:
    changed = engine.recompute([ContextChanged("threat_level", "elevated")])
    effective = changed["dev-1"].effective
    assert effective is not None
    assert effective.name == "dev-sandbox"
    assert changed["dev-1"].overlays == ("threat-raised",)


def test_a_context_key_the_policy_does_not_read_changes_nothing(engine: PolicyEngine) -> None:
    assert engine.recompute([ContextChanged("weather", "rain")]) == {}


def test_a_label_change_moves_only_that_instance(engine: PolicyEngine) -> None:
    labels = dict(engine.instances["dev-1"].labels)
    assert engine.recompute([LabelsChanged("dev-1", {**labels, "owner": "bob"})]) == {}
    changed = engine.recompute([LabelsChanged("dev-1", {**labels, "app": "api"})])
    assert list(changed) == ["dev-1"]
    assert (changed["dev-1"].persona, changed["dev-1"].rule) == ("api-server", "api")


def test_a_compromised_label_quarantines_even_a_pinned_instance(engine: PolicyEngine) -> None:
    labels = dict(engine.instances["legacy-web"].labels)
    changed = engine.recompute(
        [LabelsChanged("legacy-web", {**labels, "security/compromised": "true"})]
    )
    decision = changed["legacy-web"]
    assert decision.source is DecisionSource.PIN
    assert decision.overlays == ("compromised",)
    assert decision.effective is not None
    assert decision.effective.name == "quarantine"


def test_a_change_to_an_unknown_instance_applies_nothing(engine: PolicyEngine) -> None:
    before = dict(engine.decisions)
    with pytest.raises(NotFound, match="instance ghost does not exist"):
        engine.recompute([ContextChanged("threat_level", "high"), PinChanged("ghost", None)])
    with pytest.raises(NotFound):
        engine.recompute([InstanceRemoved("web-1"), LabelsChanged("web-1", {})])
    assert engine.decisions == before
    assert engine.context == {"threat_level": "low"}


def test_pins_and_instances_come_and_go(engine: PolicyEngine) -> None:
    changed = engine.recompute([PinChanged("web-1", "quarantine")])
    assert changed["web-1"].source is DecisionSource.PIN
    assert engine.recompute([PinChanged("web-1", None)])["web-1"].rule == "web"
    new = Instance("web-3", "web-3", labels=(("app", "web"),))
    assert engine.recompute([InstanceUpserted(new)])["web-3"].persona == "web-frontend"
    assert engine.recompute([InstanceRemoved("web-3")]) == {}
    assert "web-3" not in engine.decisions


def test_a_persona_change_reaches_exactly_its_holders(
    engine: PolicyEngine, personas: dict[str, PersonaVersion]
) -> None:
    body = dict(personas["api-server"].body)
    changed = engine.recompute(
        [PersonaChanged("api-server", PersonaVersion.of("api-server", 2, {**body, "priority": 6}))]
    )
    assert list(changed) == ["api-1"]
    effective = changed["api-1"].effective
    assert effective is not None
    assert effective.persona is not None
    assert (effective.version, effective.persona.priority) == (2, 6)


def test_a_missing_persona_is_a_problem_until_it_exists(
    policy: Policy, personas: dict[str, PersonaVersion], inventory: tuple[Instance, ...]
) -> None:
    partial = {k: v for k, v in personas.items() if k != "api-server"}
    engine = PolicyEngine(policy, partial, {}, inventory)
    api = engine.decision("api-1")
    assert api.effective is None
    assert api.problems == ("persona api-server does not exist",)
    changed = engine.recompute([PersonaChanged("api-server", personas["api-server"])])
    assert list(changed) == ["api-1"]
    assert changed["api-1"].problems == ()


def test_an_overlay_whose_result_is_invalid_is_skipped_and_said(
    personas: dict[str, PersonaVersion],
) -> None:
    document = {
        "persona_policy": {
            "rules": [],
            "default": "web-frontend",
            "overlays": [
                # web-frontend has egress_rate 200mbit: a 10mbit ceiling under it is invalid.
                {
                    "name": "bad",
                    "override": True,
                    "set": {"qos_parameters": {"egress_ceil": "10mbit"}},
                },
                {"name": "good", "set": {"priority": 1}},
            ],
        }
    }
    engine = PolicyEngine(parse_policy(document, personas), personas, {}, [Instance("a", "a")])
    decision = engine.decision("a")
    assert decision.overlays == ("good",)
    assert decision.problems[0].startswith("overlay bad skipped: the result is invalid:")
    assert "egress_ceil" in decision.problems[0]
    steps = {s.name: s for s in engine.explain("a").overlays}
    assert steps["bad"].outcome is StepOutcome.SKIPPED


def test_instances_differing_only_in_unread_labels_share_one_decision(
    policy: Policy, personas: dict[str, PersonaVersion]
) -> None:
    fleet = [
        Instance(f"vm-{n}", f"vm-{n}", labels=(("app", "web"), ("serial", str(n))))
        for n in range(50)
    ]
    engine = PolicyEngine(policy, personas, {}, fleet)
    assert engine.signatures == 1
    assert len({id(d) for d in engine.decisions.values()}) == 1


def test_explain_names_the_deciding_rule_for_every_example(engine: PolicyEngine) -> None:
    for context in ("low", "elevated", "high"):
        engine.recompute([ContextChanged("threat_level", context)])
        for instance_id, decision in engine.decisions.items():
            explanation = engine.explain(instance_id)
            matched = [s.name for s in explanation.rules if s.outcome is StepOutcome.MATCHED]
            assert matched == ([decision.rule] if decision.rule else []), instance_id
            applied = [s.name for s in explanation.overlays if s.outcome is StepOutcome.APPLIED]
            assert tuple(applied) == decision.overlays, instance_id
            for step in explanation.rules:
                if step.outcome is StepOutcome.NO_MATCH:
                    assert step.reason, (instance_id, step)


def test_explain_says_why_earlier_rules_failed(engine: PolicyEngine) -> None:
    lines = engine.explain("stray-db").lines()
    assert lines[0] == (
        "stray-db: persona dev-sandbox: no rule matched, the policy default (effective "
        f"{engine.decision('stray-db').effective.digest[:12]})"  # type: ignore[union-attr]
    )
    assert lines[1] == (
        "  rule database (/persona_policy/rules/0) no match: subnets: no address (10.0.4.81) "
        "in 10.0.2.0/24"
    )
    assert lines[2] == (
        "  rule api (/persona_policy/rules/1) no match: labels: needs app=api, has app=postgres"
    )


def test_what_if_reports_without_committing(engine: PolicyEngine) -> None:
    before = dict(engine.decisions)
    moved = what_if(engine, [ContextChanged("threat_level", "high")])
    assert engine.decisions == before
    assert {m.instance_id for m in moved} == set(EXPECTED_LOW) - {"legacy-web"}
    web = next(m for m in moved if m.instance_id == "web-1")
    assert "security_profile: medium -> high" in "\n".join(web.lines())
    assert "allowed_protocols: -http" in "\n".join(web.lines())


def test_what_if_a_new_policy(engine: PolicyEngine, personas: dict[str, PersonaVersion]) -> None:
    document: dict[str, Any] = {
        "persona_policy": {
            "context": {"threat_level": {"default": "low"}},
            "rules": [
                {"name": "web", "persona": "web-frontend", "match": {"matchLabels": {"app": "web"}}}
            ],
            "default": "dev-sandbox",
        }
    }
    moved = what_if(engine, [PolicyChanged(parse_policy(document, personas))])
    # nginx, api, db, discovery, media and admin VMs fall to the default; web-1, dev VMs and
    # the pinned one stay as they are.
    assert {m.instance_id for m in moved} == {
        "web-2",
        "api-1",
        "db-1",
        "disc-1",
        "disc-dev-1",
        "media-src-1",
        "media-rx-1",
        "admin-ws-1",
    }


# --- incremental recompute agrees with deciding from scratch ------------------------------

APPS = ["web", "nginx", "api", "postgres", "discovery", "media", None]
FLEET_IDS = [f"vm-{n}" for n in range(8)]


@st.composite
def instances(draw: st.DrawFn, instance_id: str) -> Instance:
    labels: dict[str, str] = {}
    app = draw(st.sampled_from(APPS))
    if app:
        labels["app"] = app
    for key, values in (
        ("env", ["prod", "dev"]),
        ("media-role", ["source"]),
        ("user-role", ["admin", "dev"]),
        ("security/compromised", ["true"]),
        ("owner", ["alice", "bob"]),
    ):
        if draw(st.booleans()):
            labels[key] = draw(st.sampled_from(values))
    subnet = draw(st.sampled_from(["10.0.1", "10.0.2", "10.0.4"]))
    address = f"{subnet}.{draw(st.integers(1, 250))}"
    return Instance(
        instance_id,
        instance_id,
        (address,),
        (Interface("eth0", (f"{address}/24",)),),
        tuple(sorted(labels.items())),
        draw(st.sampled_from([None, None, None, "web-frontend", "ghost"])),
    )


@dataclass(frozen=True)
class PersonaBump:
    """A drawn persona edit: becomes a PersonaChanged with the next version when applied."""

    name: str
    priority: int


@st.composite
def changes(draw: st.DrawFn) -> Change | PersonaBump:
    kind = draw(st.integers(0, 5))
    instance_id = draw(st.sampled_from(FLEET_IDS))
    if kind == 0:
        return ContextChanged("threat_level", draw(st.sampled_from(["low", "elevated", "high"])))
    if kind == 1:
        return InstanceUpserted(draw(instances(instance_id)))
    if kind == 2:
        return InstanceRemoved(instance_id)
    if kind == 3:
        return PinChanged(instance_id, draw(st.sampled_from([None, "quarantine"])))
    if kind == 4:
        name = draw(st.sampled_from(["web-frontend", "quarantine", "dev-sandbox"]))
        return PersonaBump(name, draw(st.integers(0, 7)))
    return LabelsChanged(instance_id, {"app": draw(st.sampled_from(["web", "api", "media"]))})


def _materialize(batch: list[Change | PersonaBump], engine: PolicyEngine) -> list[Change]:
    """Turn a drawn batch into valid changes against the engine's state as the batch goes."""
    present = set(engine.instances)
    versions = {name: source.version for name, source in engine.personas.items()}
    real: list[Change] = []
    for change in batch:
        if isinstance(change, PersonaBump):
            versions[change.name] += 1
            body = {**engine.personas[change.name].body, "priority": change.priority}
            source = PersonaVersion.of(change.name, versions[change.name], body)
            real.append(PersonaChanged(change.name, source))
            continue
        if isinstance(change, LabelsChanged | PinChanged) and change.instance_id not in present:
            continue
        if isinstance(change, InstanceUpserted):
            present.add(change.instance.id)
        if isinstance(change, InstanceRemoved):
            present.discard(change.instance_id)
        real.append(change)
    return real


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fleet=st.lists(st.sampled_from(FLEET_IDS), unique=True, max_size=8).flatmap(
        lambda ids: st.tuples(*(instances(i) for i in ids))
    ),
    batches=st.lists(st.lists(changes(), min_size=1, max_size=4), max_size=6),
)
def test_incremental_recompute_equals_deciding_from_scratch(
    policy: Policy,
    personas: dict[str, PersonaVersion],
    fleet: tuple[Instance, ...],
    batches: list[list[Change | PersonaBump]],
) -> None:
    engine = PolicyEngine(policy, personas, {"threat_level": "low"}, fleet)
    for batch in batches:
        before = dict(engine.decisions)
        changed = engine.recompute(_materialize(batch, engine))
        fresh = PolicyEngine(policy, engine.personas, engine.context, engine.instances.values())
        assert engine.decisions == fresh.decisions
        expected = {i: d for i, d in fresh.decisions.items() if before.get(i) != d}
        assert changed == expected
    for instance_id, decision in engine.decisions.items():  # the slow path agrees
        explanation = engine.explain(instance_id)
        matched = [s.name for s in explanation.rules if s.outcome is StepOutcome.MATCHED]
        assert matched == ([decision.rule] if decision.rule else [])
        applied = [s.name for s in explanation.overlays if s.outcome is StepOutcome.APPLIED]
        assert tuple(applied) == decision.overlays


def test_a_policy_change_is_a_full_recompute(
    engine: PolicyEngine, policy: Policy, personas: dict[str, PersonaVersion]
) -> None:
    empty = parse_policy({"persona_policy": {"rules": []}}, personas)
    changed = engine.recompute([PolicyChanged(empty)])
    # No rules, no default: every unpinned instance loses its persona.
    assert set(changed) == set(EXPECTED_LOW) - {"legacy-web"}
    assert all(d.source is DecisionSource.NONE for d in changed.values())
    assert engine.recompute([PolicyChanged(policy)]).keys() == changed.keys()


def test_evaluate_does_not_store(engine: PolicyEngine) -> None:
    facts = replace(engine.instances["web-1"], id="probe")
    assert engine.evaluate(facts).rule == "web"
    assert "probe" not in engine.decisions


@pytest.mark.parametrize("count", [0, 1])
def test_an_empty_fleet_is_fine(
    policy: Policy, personas: dict[str, PersonaVersion], count: int
) -> None:
    fleet = [Instance("a", "a")][:count]
    engine = PolicyEngine(policy, personas, {}, fleet)
    assert len(engine.decisions) == count


def test_subnets_on_and_off_octet_boundaries_and_ipv6(personas: dict[str, PersonaVersion]) -> None:
    document = {
        "persona_policy": {
            "rules": [
                {"name": "v6", "persona": "api-server", "match": {"subnets": ["fd00:1::/64"]}},
                {"name": "odd", "persona": "web-frontend", "match": {"subnets": ["10.0.16.0/20"]}},
                {"name": "even", "persona": "db-restricted", "match": {"subnets": ["10.1.0.0/16"]}},
            ],
        }
    }
    fleet = [
        Instance("a", "a", ("10.0.31.9",)),  # inside /20 (10.0.16.0-10.0.31.255)
        Instance("b", "b", ("10.0.32.1",)),  # just outside it
        Instance("c", "c", (), (Interface("eth0", ("10.1.200.3/24",)),)),
        Instance("d", "d", ("fd00:1::7",)),
        Instance("e", "e", ("::ffff:10.1.0.1",)),  # IPv4-mapped IPv6 is not 10.1.0.0/16
    ]
    engine = PolicyEngine(parse_policy(document, personas), personas, {}, fleet)
    assert {i: d.rule for i, d in engine.decisions.items()} == {
        "a": "odd",
        "b": None,
        "c": "even",
        "d": "v6",
        "e": None,
    }
    for instance_id in engine.decisions:  # the slow path agrees
        matched = [
            s.name for s in engine.explain(instance_id).rules if s.outcome is StepOutcome.MATCHED
        ]
        assert matched == (
            [engine.decision(instance_id).rule] if engine.decision(instance_id).rule else []
        )
