"""The peer record: the service's peer view entries, certificates and host facts all give one."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

import pytest

from netpersona.errors import InvalidDocument, MalformedAnswer
from netpersona.facts import parse_facts
from netpersona.model.persona import CommunicationMode, SecurityProfile
from netpersona.records import Peer
from netpersona.testing.certs import make_certificate

FULL = Peer(
    instance="api-1",
    addresses=(ip_address("10.0.0.7"), ip_address("fd00::7")),
    persona="api",
    persona_version=3,
    priority=5,
    dscp=46,
    mode=CommunicationMode.UNICAST,
    profile=SecurityProfile.MEDIUM,
    labels=(("app", "api"), ("env", "prod")),
)


def test_the_json_form_reads_back_to_the_same_peer() -> None:
    data = FULL.to_json()
    assert data["addresses"] == ["10.0.0.7", "fd00::7"]
    assert (data["mode"], data["profile"]) == ("unicast", "medium")
    assert Peer.from_json(data) == FULL


def test_a_peer_without_a_persona() -> None:
    bare = Peer("vm-2", (ip_address("10.0.0.9"),))
    assert bare.to_json()["persona"] is None
    assert bare.to_json()["priority"] == 0
    assert Peer.from_json(bare.to_json()) == bare


def test_a_certificate_gives_the_peer_it_vouches_for() -> None:
    cert = make_certificate("api-1", ("10.0.0.7",), persona="api", priority=5, dscp=46)
    peer = cert.peer()
    assert peer == Peer(
        instance="api-1",
        addresses=(ip_address("10.0.0.7"),),
        persona="api",
        persona_version=cert.persona_version,
        priority=5,
        dscp=46,
        mode=cert.mode,
        profile=cert.profile,
        labels=cert.labels,
    )
    assert Peer.from_json(peer.to_json()) == peer


@pytest.mark.parametrize(
    ("change", "pointer", "words"),
    [
        ({"instance": ""}, "/instance", "is not an instance id"),
        ({"instance": 7}, "/instance", "is not an instance id"),
        ({"addresses": ["10.0.0.256"]}, "/addresses/0", "is not an IP address"),
        ({"persona": "API"}, "/persona", "is not a persona name"),
        ({"persona_version": -1}, "/persona_version", "is not a persona version"),
        ({"priority": 8}, "/priority", "is not a priority 0..7"),
        ({"priority": None}, "/priority", "is not a priority 0..7"),
        ({"dscp": 64}, "/dscp", "is not a DSCP 0..63"),
        ({"dscp": False}, "/dscp", "is not a DSCP 0..63"),
        ({"mode": "chatty"}, "/mode", "is not a communication_mode"),
        ({"profile": "max"}, "/profile", "is not a security_profile"),
        ({"labels": {"bad key!": "x"}}, "/labels/bad key!", "is not a label key"),
        ({"id": "api-1"}, "/id", "unknown key"),
    ],
)
def test_a_wrong_type_or_range_is_refused_naming_the_field(
    change: dict[str, Any], pointer: str, words: str
) -> None:
    with pytest.raises(MalformedAnswer) as caught:
        Peer.from_json({**FULL.to_json(), **change}, at="/peers/0")
    assert f"/peers/0{pointer}: " in str(caught.value)
    assert words in str(caught.value)


def test_a_peer_needs_its_addresses() -> None:
    with pytest.raises(MalformedAnswer, match="/addresses: missing"):
        Peer.from_json({"instance": "api-1"})


def test_host_facts_name_every_bad_peer_field() -> None:
    facts = parse_facts({"peers": [{"instance": "a", "addresses": ["10.0.0.1"], "priority": 2}]})
    assert facts.peers == (Peer("a", (ip_address("10.0.0.1"),), priority=2),)
    with pytest.raises(InvalidDocument) as caught:
        parse_facts({"peers": [{"instance": "a", "addresses": ["x"], "dscp": 99}]})
    assert [e.pointer for e in caught.value.errors] == ["/peers/0/addresses/0", "/peers/0/dscp"]
