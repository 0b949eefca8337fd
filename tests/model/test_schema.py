"""The published JSON Schema agrees with the validator on the examples and the invalid corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from netpersona.model.schema import persona_schema
from tests.model.test_invalid import CASES, build

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = jsonschema.Draft202012Validator(
    persona_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)
# Rules the validator checks by value and JSON Schema cannot state.
BEYOND_SCHEMA = {
    "rate-zero",
    "rate-too-large",
    "ceil-below-rate",
    "burst-alone",
    "duplicate-protocol",
    "port-out-of-range",
    "port-zero",
    "range-backwards",
    "group-not-multicast",
    "duplicate-group",
    "peer-bad-cidr",
    "peer-bad-label-key",
}


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(persona_schema())


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.stem)
def test_examples_are_valid_against_schema(path: Path) -> None:
    VALIDATOR.validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize(
    "case", [c for c in CASES if c["name"] not in BEYOND_SCHEMA], ids=lambda c: c["name"]
)
def test_schema_rejects_invalid_documents(case: dict[str, Any]) -> None:
    assert not VALIDATOR.is_valid(build(case))
