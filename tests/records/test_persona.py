"""Persona records: a catalogue version and the effective persona an instance is served."""

from __future__ import annotations

from typing import Any

import pytest

from netpersona.errors import MalformedAnswer
from netpersona.records import (
    EffectivePersona,
    PersonaVersion,
    canonical_json,
    digest_of,
    unassigned_json,
)

BODY: dict[str, Any] = {
    "communication_mode": "unicast",
    "security_profile": "medium",
    "allowed_protocols": ["ssh"],
    "priority": 4,
}


def test_a_version_keeps_the_canonical_document_and_parses_it_once() -> None:
    version = PersonaVersion.of("web", 3, BODY, created_at=5.0, created_by="alice")
    assert version.document == canonical_json(BODY)
    first = version.persona
    assert first is not None
    assert first.priority == 4
    assert version.persona is first  # parsed once, not at every use
    assert version.problems is None
    assert version.digest == digest_of(BODY)
    assert PersonaVersion.from_json(version.to_json()) == version


def test_a_stored_document_that_does_not_validate_says_why() -> None:
    version = PersonaVersion.of("web", 2, {**BODY, "priority": 9})
    assert version.persona is None
    assert version.problems is not None
    assert "/priority" in str(version.problems)
    served = version.effective()
    assert (served.persona, served.document, served.overlays) == (None, version.body, ())


def test_the_assigned_answer_reads_back_to_the_same_effective_persona() -> None:
    effective = EffectivePersona.of("web", 3, ("threat-raised",), BODY)
    data = effective.to_json()
    assert data["assigned"] is True
    assert data["digest"] == digest_of(BODY)
    back = EffectivePersona.from_json(data)
    assert back == effective
    assert back.persona == effective.persona
    assert back.document == BODY


def test_a_served_document_that_does_not_validate_is_kept_for_the_agent_to_report() -> None:
    data = PersonaVersion.of("web", 2, {"priority": 3}).effective().to_json()
    back = EffectivePersona.from_json(data)
    assert back.persona is None
    assert back.document == {"priority": 3}


def test_the_unassigned_answer_is_not_an_effective_persona() -> None:
    assert unassigned_json() == {
        "assigned": False,
        "name": None,
        "version": None,
        "overlays": [],
        "network_persona": None,
    }
    with pytest.raises(MalformedAnswer, match="/assigned: false"):
        EffectivePersona.from_json(unassigned_json())


@pytest.mark.parametrize(
    ("change", "pointer", "words"),
    [
        ({"name": "Web"}, "/name", "is not a persona name"),
        ({"version": 0}, "/version", "is not a version"),
        ({"version": "3"}, "/version", "is not a version"),
        ({"overlays": "threat"}, "/overlays", "is not a list"),
        ({"overlays": [3]}, "/overlays/0", "is not an overlay name"),
        ({"digest": "abc"}, "/digest", "SHA-256"),
        ({"network_persona": ["ssh"]}, "/network_persona", "is not a mapping"),
        ({"extra": 1}, "/extra", "unknown key"),
    ],
)
def test_a_wrong_type_or_range_is_refused_naming_the_field(
    change: dict[str, Any], pointer: str, words: str
) -> None:
    data = {**EffectivePersona.of("web", 3, (), BODY).to_json(), **change}
    with pytest.raises(MalformedAnswer) as caught:
        EffectivePersona.from_json(data)
    assert f"{pointer}: " in str(caught.value)
    assert words in str(caught.value)


def test_a_version_refuses_a_bad_field() -> None:
    data = {**PersonaVersion.of("web", 3, BODY).to_json(), "restored_from": -2}
    with pytest.raises(MalformedAnswer, match="/restored_from: -2 is not a persona version"):
        PersonaVersion.from_json(data)
