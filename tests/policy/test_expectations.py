"""Policy tests files: the examples pass, and a broken expectation says where and what."""

from __future__ import annotations

from typing import Any

import pytest

from netpersona.errors import InvalidDocument
from netpersona.policy import (
    Policy,
    parse_policy_tests,
    require_passing,
    run_policy_tests,
)
from netpersona.records import Instance, PersonaVersion
from tests.policy.conftest import POLICY_DIR, load_yaml


def test_the_example_tests_pass(
    policy: Policy, personas: dict[str, PersonaVersion], inventory: tuple[Instance, ...]
) -> None:
    tests = parse_policy_tests(load_yaml(POLICY_DIR / "tests.yaml"), {i.id: i for i in inventory})
    results = run_policy_tests(policy, personas, tests)
    assert len(results) >= 15
    assert [r.test.name for r in results if not r.passed] == []
    require_passing(results)


def test_a_failed_expectation_names_pointer_and_values(
    policy: Policy, personas: dict[str, PersonaVersion], inventory: tuple[Instance, ...]
) -> None:
    document: dict[str, Any] = {
        "tests": [
            {"name": "ok", "instance": "web-1", "expect": {"persona": "web-frontend"}},
            {
                "name": "wrong",
                "instance": "db-1",
                "context": {"threat_level": "high"},
                "expect": {"persona": "api-server", "effective": {"security_profile": "low"}},
            },
        ]
    }
    tests = parse_policy_tests(document, {i.id: i for i in inventory})
    results = run_policy_tests(policy, personas, tests)
    assert [r.passed for r in results] == [True, False]
    with pytest.raises(InvalidDocument) as caught:
        require_passing(results)
    assert [(e.pointer, e.message) for e in caught.value.errors] == [
        ("/tests/1/expect/persona", 'wrong: expected "api-server", got "db-restricted"'),
        (
            "/tests/1/expect/effective/security_profile",
            'wrong: expected security_profile "low", got "high"',
        ),
    ]


@pytest.mark.parametrize(
    ("test", "pointer", "message"),
    [
        ({"instance": "nope", "expect": {"persona": "x"}}, "/tests/0/instance", "not in inventory"),
        ({"instance": "web-1", "expect": {}}, "/tests/0/expect", "non-empty mapping"),
        ({"instance": "web-1", "expect": {"colour": 1}}, "/tests/0/expect/colour", "unknown key"),
        (
            {"instance": {"id": "x", "labels": {"a": 1}}, "expect": {"persona": "x"}},
            "/tests/0/instance/labels/a",
            "is not a label value",
        ),
    ],
)
def test_a_bad_tests_file_is_refused(
    inventory: tuple[Instance, ...], test: dict[str, Any], pointer: str, message: str
) -> None:
    with pytest.raises(InvalidDocument) as caught:
        parse_policy_tests({"tests": [test]}, {i.id: i for i in inventory})
    errors = caught.value.errors
    assert [e.pointer for e in errors] == [pointer]
    assert message in errors[0].message
