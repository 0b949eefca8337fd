"""Overlays: tighten-only moves each field only toward strict; override sets what it names."""

from __future__ import annotations

from typing import Any

import pytest

from netpersona.model import parse_persona
from netpersona.policy import Overlay, parse_policy
from netpersona.policy.overlays import apply_overlay

WEB: dict[str, Any] = {
    "communication_mode": "multicast",
    "security_profile": "medium",
    "allowed_protocols": ["http", "https", "tcp", "udp/5004-5005", "icmp"],
    "priority": 5,
    "multicast_groups": ["239.1.1.1"],
    "qos_parameters": {"egress_rate": "200mbit", "egress_ceil": "1gbit", "burst": "128kb"},
}


def overlay(set_: dict[str, Any], override: bool = False) -> Overlay:
    document = {
        "persona_policy": {
            "rules": [],
            "overlays": [{"name": "o", "override": override, "set": set_}],
        }
    }
    return parse_policy(document).overlays[0]


def test_profile_only_goes_up() -> None:
    assert apply_overlay(WEB, overlay({"security_profile": "high"}))["security_profile"] == "high"
    assert apply_overlay(WEB, overlay({"security_profile": "low"}))["security_profile"] == "medium"


def test_mode_only_moves_toward_restricted_and_drops_groups() -> None:
    result = apply_overlay(WEB, overlay({"communication_mode": "unicast"}))
    assert result["communication_mode"] == "unicast"
    assert "multicast_groups" not in result
    parse_persona(result)
    restricted = {**WEB, "communication_mode": "restricted", "peers": [{"persona": "api"}]}
    kept = apply_overlay(restricted, overlay({"communication_mode": "unicast"}))
    assert kept["communication_mode"] == "restricted"


def test_restricted_takes_the_overlay_peers_only_when_the_persona_has_none() -> None:
    change = overlay({"communication_mode": "restricted", "peers": [{"cidr": "10.0.9.0/24"}]})
    assert apply_overlay(WEB, change)["peers"] == [{"cidr": "10.0.9.0/24"}]
    own = {**WEB, "peers": [{"persona": "api"}]}
    assert apply_overlay(own, change)["peers"] == [{"persona": "api"}]


def test_protocols_are_kept_only_where_covered() -> None:
    result = apply_overlay(WEB, overlay({"allowed_protocols": ["tcp/443", "udp", "icmp"]}))
    # https is tcp/443: covered; bare tcp is not covered by tcp/443; udp covers the range.
    assert result["allowed_protocols"] == ["https", "udp/5004-5005", "icmp"]


def test_remove_protocols_drops_every_overlapping_entry() -> None:
    result = apply_overlay(WEB, overlay({"remove_protocols": ["tcp/80"]}))
    # http is tcp/80, and "tcp" (every port) overlaps it: both go, nothing else.
    assert result["allowed_protocols"] == ["https", "udp/5004-5005", "icmp"]


@pytest.mark.parametrize(
    ("caps", "expected"),
    [
        ({"egress_rate": "100mbit"}, {"egress_rate": "100mbit", "egress_ceil": "100mbit"}),
        ({"egress_rate": "5gbit"}, {"egress_rate": "200mbit", "egress_ceil": "1gbit"}),
        ({"ingress_rate": "10mbit"}, {"ingress_rate": "10mbit"}),
        ({"burst": "64kb"}, {"burst": "64kb"}),
        ({"max_connections": 10}, {"max_connections": 10}),
    ],
)
def test_rates_only_go_down(caps: dict[str, Any], expected: dict[str, Any]) -> None:
    result = apply_overlay(WEB, overlay({"qos_parameters": caps}))
    assert {k: result["qos_parameters"][k] for k in expected} == expected
    parse_persona(result)


def test_an_egress_cap_on_an_unshaped_persona_is_a_hard_cap() -> None:
    body = {k: v for k, v in WEB.items() if k != "qos_parameters"}
    result = apply_overlay(body, overlay({"qos_parameters": {"egress_rate": "10mbit"}}))
    assert result["qos_parameters"] == {"egress_rate": "10mbit"}


def test_priority_only_goes_down() -> None:
    assert apply_overlay(WEB, overlay({"priority": 2}))["priority"] == 2
    assert apply_overlay(WEB, overlay({"priority": 7}))["priority"] == 5


def test_override_sets_exactly() -> None:
    result = apply_overlay(
        WEB,
        overlay(
            {"security_profile": "low", "communication_mode": "broadcast", "priority": 7},
            override=True,
        ),
    )
    assert (result["security_profile"], result["communication_mode"], result["priority"]) == (
        "low",
        "broadcast",
        7,
    )
    assert "multicast_groups" not in result


def test_override_replaces_the_persona_first() -> None:
    quarantine = {
        "communication_mode": "restricted",
        "security_profile": "high",
        "allowed_protocols": ["ssh"],
        "priority": 0,
        "peers": [{"cidr": "10.0.9.0/24"}],
    }
    change = overlay({"persona": "quarantine"}, override=True)
    assert apply_overlay(WEB, change, quarantine) == quarantine
    assert WEB["communication_mode"] == "multicast"  # the input is not modified
