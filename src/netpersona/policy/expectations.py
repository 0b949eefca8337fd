"""Policy tests: a file of expected assignments, checked by ``netpersona policy test``.

    context: {threat_level: low}       # the context every test starts from (optional)
    tests:
      - name: the database is restricted
        instance: db-1                 # an inventory id, or a mapping (an inline instance)
        context: {threat_level: high}  # overrides for this test (optional)
        expect:
          persona: db-restricted       # the assigned persona (null: none)
          rule: database               # the deciding rule (null: default, pin or none)
          overlays: [high-threat]      # exactly these overlays, in order
          effective: {security_profile: high}   # fields of the effective document

Operators run these in their own CI; the service runs them when a policy is saved together
with its tests and refuses the save if one fails (:func:`require_passing`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from netpersona.errors import FieldError, InvalidDocument
from netpersona.model.quote import quote
from netpersona.policy.document import Policy
from netpersona.policy.engine import PolicyEngine
from netpersona.policy.inventory import parse_inventory
from netpersona.records import Instance, PersonaVersion

__all__ = [
    "PolicyTest",
    "PolicyTestResult",
    "parse_policy_tests",
    "require_passing",
    "run_policy_tests",
]

EXPECT_KEYS = ("persona", "rule", "overlays", "effective", "source")


@dataclass(frozen=True, slots=True)
class PolicyTest:
    name: str
    pointer: str
    instance: Instance
    context: Mapping[str, str] = field(compare=False)
    expect: Mapping[str, Any] = field(compare=False)


@dataclass(frozen=True, slots=True)
class PolicyTestResult:
    test: PolicyTest
    failures: tuple[FieldError, ...]  # empty: passed

    @property
    def passed(self) -> bool:
        return not self.failures


def _strings(value: object) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def parse_policy_tests(
    document: object, inventory: Mapping[str, Instance]
) -> tuple[PolicyTest, ...]:
    errors: list[FieldError] = []
    if not isinstance(document, Mapping) or not isinstance(document.get("tests"), list):
        raise InvalidDocument([FieldError("/tests", "expected a mapping with a list of tests")])
    base = document.get("context", {})
    if not _strings(base):
        errors.append(FieldError("/context", f"expected a mapping of strings, got {quote(base)}"))
        base = {}
    tests = []
    for index, raw in enumerate(document["tests"]):
        at = f"/tests/{index}"
        if not isinstance(raw, Mapping):
            errors.append(FieldError(at, f"expected a mapping (a test), got {quote(raw)}"))
            continue
        for key in raw:
            if key not in ("name", "instance", "context", "expect"):
                errors.append(FieldError(f"{at}/{key}", f"unknown key {quote(key)}"))
        name = raw.get("name", f"test {index}")
        target = raw.get("instance")
        instance: Instance | None = None
        if isinstance(target, str):
            instance = inventory.get(target)
            if instance is None:
                errors.append(
                    FieldError(f"{at}/instance", f"instance {quote(target)} is not in inventory")
                )
        elif isinstance(target, Mapping):
            try:
                instance = parse_inventory({"instances": [target]})[0]
            except InvalidDocument as exc:
                errors += [
                    FieldError(at + "/instance" + e.pointer.removeprefix("/instances/0"), e.message)
                    for e in exc.errors
                ]
        else:
            errors.append(FieldError(f"{at}/instance", "expected an instance id or mapping"))
        context = raw.get("context", {})
        if not _strings(context):
            errors.append(FieldError(f"{at}/context", "expected a mapping of strings"))
            context = {}
        expect = raw.get("expect")
        if not isinstance(expect, Mapping) or not expect:
            errors.append(FieldError(f"{at}/expect", "expected a non-empty mapping"))
            continue
        for key in expect:
            if key not in EXPECT_KEYS:
                errors.append(
                    FieldError(
                        f"{at}/expect/{key}",
                        f"unknown key {quote(key)} (expected one of {', '.join(EXPECT_KEYS)})",
                    )
                )
        if instance is not None:
            tests.append(PolicyTest(str(name), at, instance, {**base, **context}, dict(expect)))
    if errors:
        raise InvalidDocument(errors)
    return tuple(tests)


def _check(test: PolicyTest, engine: PolicyEngine) -> tuple[FieldError, ...]:
    decision = engine.evaluate(test.instance)
    expect = test.expect
    at = f"{test.pointer}/expect"
    failures = []
    actual: dict[str, Any] = {
        "persona": decision.persona,
        "rule": decision.rule,
        "source": decision.source.value,
        "overlays": list(decision.overlays),
    }
    for key in ("persona", "rule", "source", "overlays"):
        if key in expect and expect[key] != actual[key]:
            failures.append(
                FieldError(
                    f"{at}/{key}",
                    f"{test.name}: expected {quote(expect[key])}, got {quote(actual[key])}",
                )
            )
    wanted = expect.get("effective", {})
    document = decision.effective.document if decision.effective else {}
    for key, value in wanted.items() if isinstance(wanted, Mapping) else ():
        got = document.get(key)
        if got != value:
            failures.append(
                FieldError(
                    f"{at}/effective/{key}",
                    f"{test.name}: expected {key} {quote(value)}, got {quote(got)}",
                )
            )
    return tuple(failures)


def run_policy_tests(
    policy: Policy, personas: Mapping[str, PersonaVersion], tests: tuple[PolicyTest, ...]
) -> list[PolicyTestResult]:
    engines: dict[tuple[tuple[str, str], ...], PolicyEngine] = {}
    results = []
    for test in tests:
        key = tuple(sorted(test.context.items()))
        engine = engines.get(key)
        if engine is None:
            engine = engines[key] = PolicyEngine(policy, personas, test.context)
        results.append(PolicyTestResult(test, _check(test, engine)))
    return results


def require_passing(results: list[PolicyTestResult]) -> None:
    """Raise :class:`InvalidDocument` naming every failed expectation (for a save)."""
    failures = [f for r in results for f in r.failures]
    if failures:
        raise InvalidDocument(failures, "policy tests")
