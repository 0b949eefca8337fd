"""Whatever a persona document holds, the parser answers with a Persona or InvalidDocument.

Never another exception, a hang or a blow-up; and a document it accepts is strict JSON within
the persona limits (what the service stores and every agent reads back).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netpersona.errors import InvalidDocument
from netpersona.model import Persona, parse_persona, parse_persona_text
from netpersona.model.jsontree import canonical_json
from netpersona.model.limits import PERSONA_LIMITS
from tests.model.strategies import (
    TREES,
    YAML_SNIPPETS,
    deep,
    mutated,
    mutated_text,
    only_raises,
    strict_json,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_TEXTS = [p.read_text() for p in sorted((ROOT / "examples").glob("*.yaml"))]
EXAMPLES: list[Any] = [yaml.safe_load(text) for text in EXAMPLE_TEXTS]
FUZZ = settings(
    max_examples=int(os.environ.get("NP_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def check(document: object) -> Persona | None:
    persona = only_raises(InvalidDocument, lambda: parse_persona(document))
    if persona is None:
        return None
    assert isinstance(persona, Persona)
    assert isinstance(document, dict)
    strict_json(document)
    body = document.get("network_persona", document)
    assert len(canonical_json(body)) <= PERSONA_LIMITS.max_canonical_bytes
    strict_json(dict(persona.extensions))
    return persona


def check_text(text: str | bytes) -> None:
    persona = only_raises(InvalidDocument, lambda: parse_persona_text(text))
    if persona is not None:
        assert isinstance(persona, Persona)
        strict_json(dict(persona.extensions))


def test_every_example_is_accepted_by_the_checks_below() -> None:
    """The properties below are not vacuous: the unmutated examples pass them as personas."""
    assert all(check(document) is not None for document in EXAMPLES)


@FUZZ
@given(st.text(max_size=300))
def test_any_text(text: str) -> None:
    check_text(text)


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes(data: bytes) -> None:
    check_text(data)


@FUZZ
@given(TREES)
def test_any_json_like_tree(tree: object) -> None:
    check(tree)
    check({"network_persona": tree})


@FUZZ
@given(deep())
def test_deep_nesting_anywhere(value: object) -> None:
    check({"communication_mode": "unicast", "priority": value, "x-deep": value})


@FUZZ
@given(st.sampled_from(EXAMPLES).flatmap(mutated))
def test_mutated_examples(document: object) -> None:
    check(document)


@FUZZ
@given(st.sampled_from(EXAMPLE_TEXTS).flatmap(mutated_text))
def test_mutated_example_bytes(data: bytes) -> None:
    check_text(data)


@FUZZ
@given(st.sampled_from(EXAMPLE_TEXTS), st.lists(YAML_SNIPPETS, min_size=1, max_size=3), st.data())
def test_examples_with_awkward_yaml_values(
    text: str, snippets: list[str], data: st.DataObject
) -> None:
    lines = text.splitlines()
    for snippet in snippets:
        at = data.draw(st.integers(0, len(lines) - 1))
        key, colon, _ = lines[at].partition(":")
        if colon and not lines[at].lstrip().startswith("#"):
            lines[at] = f"{key}: {snippet}"
    check_text("\n".join(lines) + "\n")
