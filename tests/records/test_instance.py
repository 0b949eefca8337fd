"""The instance record: one JSON form, read back strictly (docs/metadata-api.md)."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

import pytest

from netpersona.errors import InvalidDocument, MalformedAnswer
from netpersona.policy import parse_inventory
from netpersona.records import Instance, Interface, Tier

STORED = Instance(
    id="db-1",
    name="db one",
    addresses=("10.0.0.5", "fd00::5"),
    interfaces=(
        Interface("eth0", ("10.0.0.5/24", "fd00::5/64"), Tier.PREMIUM),
        Interface("eth1", ("192.168.1.5/24",)),
    ),
    labels=(("app", "db"), ("env", "prod")),
    pin="quarantine",
    revision=7,
    created_at=1700000000.5,
    updated_at=1700000100.0,
)


def test_the_json_form_reads_back_to_the_same_record() -> None:
    data = STORED.to_json()
    assert data["labels"] == {"app": "db", "env": "prod"}
    assert data["interfaces"][0]["tier"] == "premium"
    assert Instance.from_json(data) == STORED


def test_an_interface_reads_back_on_its_own() -> None:
    for interface in STORED.interfaces:
        assert Interface.from_json(interface.to_json()) == interface
    with pytest.raises(MalformedAnswer, match=r"/ifaces/0/addresses/0: .* is not an interface"):
        Interface.from_json({"name": "eth0", "addresses": ["10.0.0.5/33"]}, at="/ifaces/0")


def test_an_instance_never_stored_needs_only_an_id() -> None:
    instance = Instance.from_json({"id": "vm-1"})
    assert (instance.name, instance.revision, instance.pin) == ("vm-1", 0, None)
    assert Instance.from_json(instance.to_json()) == instance


def test_what_the_policy_engine_reads_of_it() -> None:
    assert STORED.ips() == ("10.0.0.5", "fd00::5", "192.168.1.5")
    assert STORED.subnets() == (
        ip_network("10.0.0.0/24"),
        ip_network("fd00::/64"),
        ip_network("192.168.1.0/24"),
    )
    assert STORED.interface_names() == ("eth0", "eth1")


@pytest.mark.parametrize(
    ("change", "pointer", "words"),
    [
        ({"id": "Not An Id"}, "/id", "is not an instance id"),
        ({"addresses": ["10.0.0.300"]}, "/addresses/0", "is not an IP address"),
        ({"addresses": "10.0.0.5"}, "/addresses", "is not a list"),
        (
            {"interfaces": [{"name": "eth0", "addresses": ["10.0.0.5"]}]},
            "/interfaces/0/addresses/0",
            "interface address",
        ),
        ({"interfaces": [{"name": "a-name-far-too-long"}]}, "/interfaces/0/name", "interface name"),
        ({"interfaces": [{"name": "eth0", "tier": "gold"}]}, "/interfaces/0/tier", "is not a tier"),
        ({"labels": {"app": 3}}, "/labels/app", "is not a label value"),
        ({"pin": "No_Such"}, "/pin", "is not a persona name"),
        ({"revision": -1}, "/revision", "is not a revision"),
        ({"revision": True}, "/revision", "is not a revision"),
        ({"created_at": "yesterday"}, "/created_at", "is not a time"),
        ({"colour": "blue"}, "/colour", "unknown key"),
    ],
)
def test_a_wrong_type_or_range_is_refused_naming_the_field(
    change: dict[str, Any], pointer: str, words: str
) -> None:
    with pytest.raises(MalformedAnswer) as caught:
        Instance.from_json({**STORED.to_json(), **change}, at="/instance")
    assert f"/instance{pointer}: " in str(caught.value)
    assert words in str(caught.value)


def test_not_a_mapping_is_refused() -> None:
    with pytest.raises(MalformedAnswer, match="expected a mapping"):
        Instance.from_json(["db-1"])


def test_an_inventory_is_a_list_of_instances_with_every_problem_named() -> None:
    instances = parse_inventory({"instances": [{"id": "a", "labels": {"app": "web"}}]})
    assert instances == (Instance("a", "a", labels=(("app", "web"),)),)
    with pytest.raises(InvalidDocument) as caught:
        parse_inventory(
            {"instances": [{"id": "a", "addresses": ["x"]}, {"id": "b", "pin": 5}, {"id": "b"}]}
        )
    assert [e.pointer for e in caught.value.errors] == [
        "/instances/0/addresses/0",
        "/instances/1/pin",
    ]
