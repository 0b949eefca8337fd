"""A bad policy is refused with every problem, each at its JSON pointer; a good one parses."""

from __future__ import annotations

import os
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netpersona.errors import FieldError, InvalidDocument
from netpersona.model import load_document
from netpersona.model.jsontree import canonical_json
from netpersona.model.limits import POLICY_LIMITS
from netpersona.policy import Policy, parse_policy
from netpersona.records import PersonaVersion
from tests.model.strategies import (
    LONE_SURROGATES,
    TREES,
    deep,
    mutated,
    mutated_text,
    only_raises,
    strict_json,
)
from tests.policy.conftest import EXAMPLES, POLICY_DIR

PERSONAS = {"web", "db", "sandbox", "quarantine"}


def policy(**body: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "context": {"threat_level": {"values": ["low", "high"], "default": "low"}},
        "rules": [],
    }
    document.update(body)
    return {"persona_policy": document}


def errors(document: object) -> list[tuple[str, str]]:
    with pytest.raises(InvalidDocument) as caught:
        parse_policy(document, PERSONAS)
    return [(e.pointer, e.message) for e in caught.value.errors]


def rule(name: str, persona: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "persona": persona, **extra}


R = "/persona_policy/rules"


@pytest.mark.parametrize(
    ("document", "pointer", "message"),
    [
        (
            policy(rules=[rule("a", "nosuch")]),
            f"{R}/0/persona",
            'persona "nosuch" does not exist',
        ),
        (policy(default="ghost"), "/persona_policy/default", 'persona "ghost" does not exist'),
        (
            policy(rules=[rule("a", "web"), rule("a", "db")]),
            f"{R}/1/name",
            f'"a" is used twice (first at {R}/0/name)',
        ),
        (
            policy(rules=[rule("a", "web", when='threat_lvl == "high"')]),
            f"{R}/0/when",
            "undeclared reference to 'threat_lvl'",
        ),
        (
            policy(rules=[rule("a", "web", when='name.startWith("db")')]),
            f"{R}/0/when",
            "undeclared reference to 'startWith'",
        ),
        (
            policy(rules=[rule("a", "web", when="threat_level == 3")]),
            f"{R}/0/when",
            "found no matching overload for '_==_' applied to '(string, int)'",
        ),
        (
            policy(rules=[rule("a", "web", when="labels.app ==")]),
            f"{R}/0/when",
            "Syntax error",
        ),
        (
            policy(rules=[rule("a", "web", when="labels.app")]),
            f"{R}/0/when",
            "must be true or false, but gives a string",
        ),
        (
            policy(
                rules=[
                    rule(
                        "a",
                        "web",
                        match={"matchExpressions": [{"key": "app", "operator": "Like"}]},
                    )
                ]
            ),
            f"{R}/0/match/matchExpressions/0/operator",
            '"Like" is not an operator (In, NotIn, Exists, DoesNotExist)',
        ),
        (
            policy(
                rules=[
                    rule(
                        "a",
                        "web",
                        match={"matchExpressions": [{"key": "app", "operator": "In"}]},
                    )
                ]
            ),
            f"{R}/0/match/matchExpressions/0/values",
            "expected a non-empty list",
        ),
        (
            policy(rules=[rule("a", "web", match={"context": {"matchLabels": {"site": "x"}}})]),
            f"{R}/0/match/context/matchLabels/site",
            'context key "site" is not declared',
        ),
        (
            policy(rules=[rule("a", "web", match={"subnets": ["10.0.0.1/24"]})]),
            f"{R}/0/match/subnets/0",
            '"10.0.0.1/24" is not a network',
        ),
        (
            policy(rules=[rule("a", "web", match={"matchLabels": {"app": "web app"}})]),
            f"{R}/0/match/matchLabels/app",
            "is not a label value",
        ),
        (
            policy(rules=[rule("a", "web", match={"colour": "red"})]),
            f"{R}/0/match/colour",
            'unknown key "colour"',
        ),
        (
            policy(context={"threat-level": {}}),
            "/persona_policy/context/threat-level",
            "is not a usable context key",
        ),
        (
            policy(context={"labels": {}}),
            "/persona_policy/context/labels",
            "is reserved",
        ),
        (
            policy(context={"threat_level": {"values": ["low"], "default": "high"}}),
            "/persona_policy/context/threat_level/default",
            '"high" is not one of the declared values (low)',
        ),
    ],
)
def test_invalid_policy_names_pointer_and_problem(
    document: object, pointer: str, message: str
) -> None:
    found = errors(document)
    assert [p for p, _ in found] == [pointer], found
    assert message in found[0][1], found


OVERLAY = "/persona_policy/overlays/0"


@pytest.mark.parametrize(
    ("overlay", "pointer", "message"),
    [
        ({"set": {"persona": "quarantine"}}, f"{OVERLAY}/set/persona", "mark the overlay override"),
        (
            {"set": {"communication_mode": "broadcast"}},
            f"{OVERLAY}/set/communication_mode",
            "is not a tightening",
        ),
        (
            {"set": {"communication_mode": "restricted"}},
            f"{OVERLAY}/set/peers",
            "restricted mode needs a non-empty peers list",
        ),
        (
            {"set": {"qos_parameters": {"egress_rate": "fast"}}},
            f"{OVERLAY}/set/qos_parameters/egress_rate",
            '"fast" is not a rate',
        ),
        (
            {"set": {"qos_parameters": {"dscp": "ef"}}},
            f"{OVERLAY}/set/qos_parameters/dscp",
            "override",
        ),
        ({"set": {"remove_protocols": ["quic"]}}, f"{OVERLAY}/set/remove_protocols/0", "quic"),
        ({"set": {"colour": "red"}}, f"{OVERLAY}/set/colour", 'unknown key "colour"'),
        ({"set": {}}, f"{OVERLAY}/set", "an overlay must change something"),
        ({"enforce": "yes", "set": {"priority": 1}}, f"{OVERLAY}/enforce", "is not true or false"),
    ],
)
def test_invalid_overlay(overlay: dict[str, Any], pointer: str, message: str) -> None:
    found = errors(policy(overlays=[{"name": "o", **overlay}]))
    assert [p for p, _ in found] == [pointer], found
    assert message in found[0][1]


def test_every_problem_is_reported_at_once() -> None:
    found = errors(
        policy(
            rules=[rule("a", "nosuch"), rule("b", "web", when="nope")],
            default="ghost",
            surprise=1,
        )
    )
    assert [p for p, _ in found] == [
        "/persona_policy/surprise",
        f"{R}/0/persona",
        f"{R}/1/when",
        "/persona_policy/default",
    ]


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            [rule("all-web", "web"), rule("db", "db", match={"matchLabels": {"app": "db"}})],
            "rule db is unreachable: every instance it matches is first matched by rule all-web",
        ),
        (
            [
                rule(
                    "web",
                    "web",
                    match={
                        "matchExpressions": [
                            {"key": "app", "operator": "In", "values": ["web", "nginx"]}
                        ]
                    },
                ),
                rule("nginx", "db", match={"matchLabels": {"app": "nginx", "env": "prod"}}),
            ],
            "which assigns web, not db",
        ),
        (
            [
                rule(
                    "a", "web", match={"matchLabels": {"app": "x"}}, when='threat_level == "high"'
                ),
                rule(
                    "b", "web", match={"matchLabels": {"app": "x"}}, when='threat_level == "high"'
                ),
            ],
            "the later rule is redundant",
        ),
        (
            [
                rule("a", "web", match={"subnets": ["10.0.0.0/16"]}),
                rule("b", "db", match={"subnets": ["10.0.3.0/24"]}),
            ],
            "first matched by rule a",
        ),
        (
            [
                rule("a", "web", match={"names": ["db-*"]}),
                rule("b", "db", match={"names": ["db-eu-*"]}),
            ],
            "first matched by rule a",
        ),
    ],
)
def test_shadowed_rules_are_refused(rules: list[dict[str, Any]], message: str) -> None:
    found = errors(policy(rules=rules))
    assert found[0][0] == f"{R}/1"
    assert message in found[0][1]


@pytest.mark.parametrize(
    "match",
    [
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "app", "operator": "DoesNotExist"}],
        },
        {
            "matchExpressions": [
                {"key": "app", "operator": "In", "values": ["a"]},
                {"key": "app", "operator": "In", "values": ["b"]},
            ]
        },
        {"context": {"matchLabels": {"threat_level": "severe"}}},
    ],
)
def test_self_contradicting_rules_are_refused(match: dict[str, Any]) -> None:
    found = errors(policy(rules=[rule("a", "web", match=match)]))
    assert found[0][0] == f"{R}/0/match"
    assert "never matches" in found[0][1]


def test_rules_that_only_look_alike_are_accepted() -> None:
    parsed = parse_policy(
        policy(
            rules=[
                rule(
                    "a", "web", match={"matchLabels": {"app": "web"}}, when='threat_level == "low"'
                ),
                rule("b", "db", match={"matchLabels": {"app": "web"}}),  # a has a condition
                rule("c", "db", match={"names": ["db-[x]*"]}),
                rule("d", "web", match={"names": ["db-x*"]}),  # glob "[x]" is not a literal prefix
            ],
            default="sandbox",
        ),
        PERSONAS,
    )
    assert isinstance(parsed, Policy)
    assert parsed.personas == {"web", "db", "sandbox"}


def test_catalog_check_is_optional() -> None:
    parsed = parse_policy(policy(rules=[rule("a", "anything")]))
    assert parsed.rules[0].persona == "anything"


def test_context_values_are_checked_against_the_declaration(
    personas: dict[str, PersonaVersion],
) -> None:
    parsed = parse_policy(policy(), personas)
    assert parsed.context_problem("threat_level", "high") is None
    assert parsed.context_problem("undeclared", "anything") is None
    assert parsed.context_problem("threat_level", "severe") == (
        '"severe" is not a value of context key threat_level (expected one of high, low)'
    )


# --- bounds: whatever the document holds, InvalidDocument or a Policy --------------------------

EXAMPLE_POLICY_TEXT = (POLICY_DIR / "policy.yaml").read_text()
EXAMPLE_POLICY: Any = yaml.safe_load(EXAMPLE_POLICY_TEXT)
EXAMPLE_PERSONAS = {p.stem for p in EXAMPLES.glob("*.yaml")}
FUZZ = settings(
    max_examples=int(os.environ.get("NP_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def check_policy(document: object) -> Policy | None:
    policy = only_raises(InvalidDocument, lambda: parse_policy(document, EXAMPLE_PERSONAS))
    if policy is None:
        return None
    assert isinstance(policy, Policy)
    assert len(canonical_json(policy.document)) <= POLICY_LIMITS.max_canonical_bytes
    strict_json(document)
    return policy


def check_policy_text(data: str | bytes) -> None:
    only_raises(InvalidDocument, lambda: check_policy(load_document(data, limits=POLICY_LIMITS)))


def test_the_example_policy_passes_the_fuzzing_checks() -> None:
    assert check_policy(EXAMPLE_POLICY) is not None


@FUZZ
@given(st.text(max_size=300))
def test_policy_of_any_text(text: str) -> None:
    check_policy_text(text)


@FUZZ
@given(TREES)
def test_policy_of_any_json_like_tree(tree: object) -> None:
    check_policy(tree)
    check_policy({"persona_policy": tree})


@FUZZ
@given(st.sampled_from([EXAMPLE_POLICY]).flatmap(mutated))
def test_mutated_example_policy(document: object) -> None:
    check_policy(document)


@FUZZ
@given(mutated_text(EXAMPLE_POLICY_TEXT))
def test_mutated_example_policy_bytes(data: bytes) -> None:
    check_policy_text(data)


@FUZZ
@given(st.text(max_size=200) | LONE_SURROGATES | deep())
def test_any_condition(when: object) -> None:
    check_policy(policy(rules=[rule("a", "web", when=when)]))


def test_policy_alias_bomb_is_refused_at_once() -> None:
    lines = ['x-a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"x-a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    text = "persona_policy:\n  rules: []\n" + "".join(f"  {line}\n" for line in lines)
    text += "  description: *a8\n"
    with pytest.raises(InvalidDocument) as caught:
        load_document(text, limits=POLICY_LIMITS)
    assert caught.value.errors == (FieldError("", POLICY_LIMITS.too_many()),)


@pytest.mark.parametrize(
    ("where", "value", "pointer", "message"),
    [
        ("description", float("nan"), "/persona_policy/description", "NaN is not a JSON number"),
        ("x-n", 2**63, "/persona_policy/x-n", "outside the signed 64-bit integers"),
        ("x-n", {7: 1}, "/persona_policy/x-n/7", "key 7 is not a string"),
        ("description", "\ud800", "/persona_policy/description", "lone surrogate"),
    ],
)
def test_policy_values_must_be_strict_json(
    where: str, value: object, pointer: str, message: str
) -> None:
    problems = errors(policy(**{where: value}))
    assert [p for p, _ in problems] == [pointer]
    assert message in problems[0][1]


def test_policy_integers_past_64_bits_in_a_field_are_field_errors() -> None:
    overlay = {"name": "o", "override": True, "set": {"priority": 2**64}}
    problems = errors(policy(overlays=[overlay]))
    assert problems[0][0] == "/persona_policy/overlays/0/set/priority"
    assert "is out of range (expected an integer 0..7)" in problems[0][1]


def test_a_condition_with_a_lone_surrogate_is_an_error_not_a_crash() -> None:
    problems = errors(policy(rules=[rule("a", "web", when='name == "\ud800"')]))
    assert problems == [(f"{R}/0/when", problems[0][1])]
    assert "lone surrogate" in problems[0][1]


def test_the_canonical_policy_is_at_most_1_mib() -> None:
    document = policy(description="d" * (POLICY_LIMITS.max_canonical_bytes - 200))
    assert parse_policy(document, PERSONAS)
    problems = errors(policy(description="d" * POLICY_LIMITS.max_canonical_bytes))
    assert problems == [
        ("", "is larger than that as canonical JSON; a policy may be at most 1 MiB")
    ]
