"""Every validation rule, one invalid document each: the error names the pointer and the value."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from netpersona.errors import FieldError, InvalidDocument
from netpersona.model import QosParameters, parse_persona, parse_persona_text
from netpersona.model.schema import persona_schema

CORPUS = yaml.safe_load((Path(__file__).parent / "invalid_personas.yaml").read_text())
CASES: list[dict[str, Any]] = CORPUS["cases"]


def build(case: dict[str, Any]) -> object:
    if "replace" in case:
        return {"network_persona": case["replace"]}
    body = copy.deepcopy(CORPUS["base"])
    for key in case.get("remove", ()):
        del body[key]
    body.update(copy.deepcopy(case.get("set", {})))
    return {"network_persona": body, **case.get("top", {})}


def test_corpus_has_a_case_per_rule() -> None:
    assert len(CASES) >= 30
    assert len({c["name"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_invalid_document_reports_pointer_and_message(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidDocument) as caught:
        parse_persona(build(case))
    errors = caught.value.errors
    assert [e.pointer for e in errors] == [case["pointer"]], errors
    assert case["message"] in errors[0].message


def test_all_errors_are_reported_at_once() -> None:
    doc = {
        "network_persona": {
            "communication_mode": "anycast",
            "security_profile": "high",
            "allowed_protocols": ["ssh", "quic"],
            "priority": 9,
            "qos_parameters": {"egress_rate": "fast", "dscp": "gold"},
        }
    }
    with pytest.raises(InvalidDocument) as caught:
        parse_persona(doc)
    assert [e.pointer for e in caught.value.errors] == [
        "/network_persona/communication_mode",
        "/network_persona/allowed_protocols/1",
        "/network_persona/priority",
        "/network_persona/qos_parameters/egress_rate",
        "/network_persona/qos_parameters/dscp",
    ]


def test_bare_persona_pointers_are_relative_to_it() -> None:
    """The inner mapping alone is accepted too; pointers are then into it, as in spec section 1."""
    with pytest.raises(InvalidDocument) as caught:
        parse_persona(
            {
                "communication_mode": "unicast",
                "security_profile": "low",
                "allowed_protocols": [],
                "priority": 1,
                "qos_parameters": {"egress_rate": "fast"},
            }
        )
    assert caught.value.errors == (
        FieldError("/qos_parameters/egress_rate", '"fast" is not a rate (expected e.g. 100mbit)'),
    )


def test_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(InvalidDocument) as caught:
        parse_persona_text("network_persona:\n  priority: [1\n", "bad.yaml")
    assert "line" in str(caught.value)
    assert str(caught.value).startswith("bad.yaml: /: not valid YAML or JSON")


def test_pointer_escapes_slash_and_tilde() -> None:
    with pytest.raises(InvalidDocument) as caught:
        parse_persona({**CORPUS["base"], "a/b~c": 1})
    assert caught.value.errors[0].pointer == "/a~1b~0c"


def test_x_keys_are_kept_not_rejected() -> None:
    persona = parse_persona(
        {"network_persona": {**CORPUS["base"], "x-owner": "team-a"}, "x-note": 1}
    )
    assert persona.extensions == (("x-owner", "team-a"),)


def test_absent_qos_parameters_means_empty() -> None:
    """Spec section 1: an absent qos_parameters means {} (and the schema says so)."""
    body = {
        "communication_mode": "unicast",
        "security_profile": "low",
        "allowed_protocols": ["ssh"],
        "priority": 2,
    }
    without = parse_persona({"network_persona": body})
    assert without == parse_persona({"network_persona": {**body, "qos_parameters": {}}})
    assert without.qos == QosParameters()
    assert without.dscp == 10  # derived from priority, nothing overridden
    qos = persona_schema()["$defs"]["persona"]["properties"]["qos_parameters"]
    assert qos["default"] == {}
    assert "qos_parameters" not in persona_schema()["$defs"]["persona"]["required"]


@pytest.mark.parametrize(
    ("count", "accepted"), [(1, True), (2**31 - 1, True), (2**31, False), (2**63, False)]
)
def test_max_connections_bounds(count: int, accepted: bool) -> None:
    document = copy.deepcopy(CORPUS["base"])
    document["qos_parameters"] = {"max_connections": count}
    if accepted:
        assert parse_persona(document).qos.max_connections == count
        return
    with pytest.raises(InvalidDocument) as caught:
        parse_persona(document)
    assert caught.value.errors == (
        FieldError(
            "/qos_parameters/max_connections",
            f"{count} is out of range (expected an integer 1..2147483647)",
        ),
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("priority", 8, "8 is out of range (expected an integer 0..7)"),
        ("priority", -1, "-1 is out of range"),
        ("priority", 2**64, "18446744073709551616 is out of range"),
        ("priority", True, "true is not a priority"),
        ("priority", 1.0, "1.0 is not a priority"),
    ],
)
def test_integer_fields_take_integers_in_range(field: str, value: object, message: str) -> None:
    document = {**copy.deepcopy(CORPUS["base"]), field: value}
    with pytest.raises(InvalidDocument) as caught:
        parse_persona(document)
    assert [e.pointer for e in caught.value.errors] == [f"/{field}"]
    assert message in caught.value.errors[0].message
