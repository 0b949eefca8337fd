"""The compiler as pure code: what each persona field turns into (spec sections 3-7).

Whether the kernel then does what these rules say is checked with real packets in the
dataplane tests; here the question is whether the plan says the right thing.
"""

from __future__ import annotations

import json
from dataclasses import replace
from ipaddress import IPv4Address, ip_address, ip_interface
from typing import Any

import pytest

from netpersona.compiler import compile_plan
from netpersona.compiler.plan import Plan, Route, RoutingRule, Sysctl, TcClass
from netpersona.facts import Endpoint, HostFacts, Tier, Uplink
from netpersona.model import parse_persona
from netpersona.records import Peer

ETH0 = Uplink("eth0", (ip_interface("10.0.0.5/24"),), IPv4Address("10.0.0.1"))
FACTS = HostFacts(
    uplinks=(ETH0,),
    peers=(
        Peer(
            "api-1",
            (IPv4Address("10.0.0.20"),),
            persona="api",
            labels=(("app", "api"),),
            priority=6,
        ),
        Peer(
            "web-1",
            (IPv4Address("10.0.0.10"),),
            persona="web",
            labels=(("app", "web"),),
            priority=2,
        ),
    ),
)


def persona(**fields: Any) -> Any:
    body = {
        "communication_mode": "unicast",
        "security_profile": "medium",
        "allowed_protocols": ["ssh"],
        "priority": 3,
    }
    body.update(fields)
    return parse_persona({"network_persona": body})


def chain_rules(plan: Plan, chain: str) -> list[str]:
    """Each rule of ``chain`` as compact JSON, for matching by content."""
    return [
        json.dumps(o["rule"]["expr"], sort_keys=True)
        for o in plan.nftables
        if "rule" in o and o["rule"]["chain"] == chain
    ]


def chains(plan: Plan) -> set[str]:
    return {o["chain"]["name"] for o in plan.nftables if "chain" in o}


def test_every_plan_keeps_metadata_and_control_channel_open() -> None:
    for mode, profile in [("restricted", "high"), ("unicast", "low"), ("multicast", "medium")]:
        extra: dict[str, Any] = {"peers": [{"persona": "api"}]} if mode == "restricted" else {}
        if mode == "multicast":
            extra["multicast_groups"] = ["239.1.1.1"]
        plan = compile_plan(
            persona(communication_mode=mode, security_profile=profile, **extra), FACTS
        )
        inbound, outbound = (
            " ".join(chain_rules(plan, "lockout_in")),
            " ".join(chain_rules(plan, "lockout_out")),
        )
        assert '"169.254.169.254"' in inbound
        assert "7480" in inbound
        assert '"169.254.169.254"' in outbound
        # The lockout chains are jumped to before any drop.
        assert chain_rules(plan, "input")[1] == json.dumps([{"jump": {"target": "lockout_in"}}])
        assert chain_rules(plan, "output")[1] == json.dumps([{"jump": {"target": "lockout_out"}}])


def test_every_replica_of_the_metadata_service_stays_reachable_and_in_the_top_class() -> None:
    facts = replace(
        FACTS,
        metadata_fallbacks=(
            Endpoint(IPv4Address("10.9.0.2"), 8080),
            Endpoint(ip_address("fd00::2"), 80),
            FACTS.metadata,  # listed twice: one rule
        ),
    )
    plan = compile_plan(
        persona(
            communication_mode="restricted",
            security_profile="high",
            peers=[{"persona": "api"}],
            qos_parameters={"egress_rate": "100mbit"},
        ),
        facts,
    )
    for chain in ("lockout_in", "lockout_out"):
        rules = " ".join(chain_rules(plan, chain))
        for address in ("169.254.169.254", "10.9.0.2", "fd00::2"):
            assert rules.count(f'"{address}"') == 1, (chain, address)
        assert '"ip6"' in rules
        assert "8080" in rules
    marked = " ".join(chain_rules(plan, "mark_out"))
    assert '"10.9.0.2"' in marked
    assert '"fd00::2"' in marked


@pytest.mark.parametrize(("profile", "rp"), [("low", "0"), ("medium", "2"), ("high", "2")])
def test_rp_filter_per_profile(profile: str, rp: str) -> None:
    plan = compile_plan(persona(security_profile=profile), FACTS)
    assert Sysctl("net.ipv4.conf.eth0.rp_filter", rp) in plan.sysctls
    redirects_off = Sysctl("net.ipv4.conf.all.accept_redirects", "0") in plan.sysctls
    assert redirects_off == (profile != "low")


@pytest.mark.parametrize(
    ("profile", "flags"), [("low", None), ("medium", ["saddr"]), ("high", ["saddr", "iif"])]
)
def test_reverse_path_check_per_profile_on_uplinks_only(
    profile: str, flags: list[str] | None
) -> None:
    rules = chain_rules(compile_plan(persona(security_profile=profile), FACTS), "prerouting")
    # Other interfaces are left alone, and section 3 traffic is exempt, before any drop.
    assert rules[0] == json.dumps(
        [{"match": {"left": {"meta": {"key": "iifname"}}, "op": "!=", "right": "eth0"}},
         {"return": None}], sort_keys=True)  # fmt: skip
    rpf = [r for r in rules if "drop_rpf" in r]
    if flags is None:
        assert rules[1] == json.dumps([{"jump": {"target": "lockout_in"}}])
        assert rpf == []
    else:
        fib = {"fib": {"flags": flags, "result": "oif"}}
        check = [
            {"match": {"left": fib, "op": "==", "right": False}},
            {"counter": "drop_rpf"},
            {"drop": None},
        ]
        control = {"match": {"left": {"payload": {"field": "dport", "protocol": "udp"}},
                             "op": "==", "right": FACTS.control_port}}  # fmt: skip
        # The control channel is checked before the section 3 exemption lets it through.
        assert rpf == [
            json.dumps([control, *check], sort_keys=True),
            json.dumps(check, sort_keys=True),
        ]
        assert rules.index(rpf[0]) == 1
        assert rules[2] == json.dumps([{"jump": {"target": "lockout_in"}}])


def test_no_uplink_no_prerouting_rules() -> None:
    plan = compile_plan(persona(security_profile="high"), HostFacts())
    assert chain_rules(plan, "prerouting") == []


def test_multicast_refused_or_unreceived_is_counted_before_routing() -> None:
    groups = {"multicast_groups": ["239.1.1.1", "ff15::1"]}
    plan = compile_plan(persona(communication_mode="multicast", **groups), FACTS)
    rules = chain_rules(plan, "prerouting")
    for version in (4, 6):
        refused = next(r for r in rules if "drop_multicast" in r and f"mcast_v{version}" in r)
        assert '"op": "!="' in refused
        unjoined = [r for r in rules if "drop_mcast_unjoined" in r and f"mcast_v{version}" in r]
        assert len(unjoined) == 1
        # A socket that would receive it lets it through first.
        receiver = rules.index(unjoined[0]) - 1
        assert '"socket"' in rules[receiver]
        assert '"return"' in rules[receiver]
    unicast = chain_rules(compile_plan(persona(), FACTS), "prerouting")
    assert sum("drop_multicast" in r for r in unicast) == 2
    assert not any("drop_mcast_unjoined" in r for r in unicast)


def test_forwarding_dropped_only_in_high() -> None:
    assert "forward" in chains(compile_plan(persona(security_profile="high"), FACTS))
    assert "forward" not in chains(compile_plan(persona(security_profile="medium"), FACTS))


def test_invalid_conntrack_accepted_only_in_low() -> None:
    low = chain_rules(compile_plan(persona(security_profile="low"), FACTS), "input")
    medium = chain_rules(compile_plan(persona(security_profile="medium"), FACTS), "input")
    assert any('"invalid"' in r and '"accept"' in r for r in low)
    assert any('"invalid"' in r and "drop_invalid" in r for r in medium)


def test_outbound_per_profile_and_restricted_mode() -> None:
    low = chain_rules(compile_plan(persona(security_profile="low"), FACTS), "output")
    assert low[-1] == json.dumps([{"accept": None}])
    medium = chain_rules(compile_plan(persona(security_profile="medium"), FACTS), "output")
    assert medium[-1] == json.dumps([{"goto": {"target": "out_proto"}}])
    restricted_low = compile_plan(
        persona(
            communication_mode="restricted", security_profile="low", peers=[{"persona": "api"}]
        ),
        FACTS,
    )
    out = chain_rules(restricted_low, "output")
    assert "drop_not_peer" in out[-1]
    assert any("@peer_addrs_v4" in r and '"accept"' in r for r in out)


def test_peers_resolve_to_set_elements_and_cidrs_to_interval_set() -> None:
    plan = compile_plan(
        persona(peers=[{"persona": "api"}, {"labels": {"app": "web"}}, {"cidr": "10.20.0.0/24"}]),
        FACTS,
    )
    assert plan.peer_sets.addrs_v4 == ("10.0.0.10", "10.0.0.20")
    nets = next(
        o["set"] for o in plan.nftables if "set" in o and o["set"]["name"] == "peer_nets_v4"
    )
    assert nets["elem"] == [{"prefix": {"addr": "10.20.0.0", "len": 24}}]


def test_no_peers_in_high_means_own_subnets() -> None:
    plan = compile_plan(persona(security_profile="high"), FACTS)
    nets = next(
        o["set"] for o in plan.nftables if "set" in o and o["set"]["name"] == "peer_nets_v4"
    )
    assert nets["elem"] == [{"prefix": {"addr": "10.0.0.0", "len": 24}}]
    assert "drop_not_peer" in chain_rules(plan, "input")[-1]


def test_higher_priority_peer_gets_its_dscp() -> None:
    plan = compile_plan(persona(priority=3), FACTS)
    # api-1 has priority 6 (CS5 = 40); web-1's priority 2 is lower and is left alone.
    assert plan.peer_sets.dscp_v4 == (("10.0.0.20", 40),)


def test_a_summary_entry_sets_the_dscp_but_is_never_a_peer() -> None:
    # The service's priority summary: instance, addresses, priority, DSCP; no persona, labels.
    top = Peer(instance="top", addresses=(IPv4Address("10.0.0.77"),), priority=7)
    facts = replace(FACTS, peers=(*FACTS.peers, top))
    plan = compile_plan(persona(priority=3, peers=[{"labels": {"app": "api"}}]), facts)
    assert ("10.0.0.77", 46) in plan.peer_sets.dscp_v4
    assert "10.0.0.77" not in plan.peer_sets.addrs_v4


def test_peer_change_is_a_set_update_not_a_reload() -> None:
    p = persona(peers=[{"persona": "api"}])
    before = compile_plan(p, FACTS)
    moved = replace(
        FACTS,
        peers=(replace(FACTS.peers[0], persona="web"), replace(FACTS.peers[1], persona="api")),
    )
    after = compile_plan(p, moved)
    assert before.peer_sets.addrs_v4 == ("10.0.0.20",)
    assert after.peer_sets.addrs_v4 == ("10.0.0.10",)
    assert before.ruleset_digest == after.ruleset_digest
    assert before.digest != after.digest


def test_egress_rate_alone_is_a_hard_cap() -> None:
    plan = compile_plan(persona(qos_parameters={"egress_rate": "10mbit"}), FACTS)
    persona_class = next(
        op for op in plan.tc if isinstance(op, TcClass) and op.classid == "6e70:20"
    )
    assert (persona_class.rate, persona_class.ceil) == (10_000_000, 10_000_000)
    control = next(op for op in plan.tc if isinstance(op, TcClass) and op.classid == "6e70:10")
    assert control.prio < persona_class.prio
    assert control.ceil >= persona_class.ceil
    assert any("6e70:10" in r for r in chain_rules(plan, "mark_out"))


def test_no_egress_keys_no_tc() -> None:
    assert compile_plan(persona(qos_parameters={"dscp": "ef", "mtu": 1400}), FACTS).tc == ()


def test_two_uplinks_steer_by_priority() -> None:
    eth1 = Uplink(
        "eth1", (ip_interface("10.1.0.5/24"),), IPv4Address("10.1.0.1"), tier=Tier.STANDARD
    )
    facts = replace(FACTS, uplinks=(replace(ETH0, tier=Tier.PREMIUM), eth1))
    high = compile_plan(persona(priority=6), facts)
    low = compile_plan(persona(priority=2), facts)
    assert Route(4, 7480, "default", "eth0", "10.0.0.1", "10.0.0.5") in high.routes
    assert Route(4, 7480, "default", "eth1", "10.1.0.1", "10.1.0.5") in low.routes
    assert RoutingRule(4, 7481, 254, suppress_prefixlength=0) in high.rules
    assert RoutingRule(4, 7482, 7480) in high.rules
    assert compile_plan(persona(priority=6), FACTS).routes == ()


def test_multicast_mode_routes_groups_and_sets_the_flag() -> None:
    plan = compile_plan(
        persona(communication_mode="multicast", multicast_groups=["239.1.1.1"]), FACTS
    )
    assert Route(4, 7480, "224.0.0.0/4", "eth0") in plan.routes
    assert RoutingRule(4, 7480, 7480, dst="224.0.0.0/4") in plan.rules
    assert plan.links[0].multicast is True
    groups = next(o["set"] for o in plan.nftables if "set" in o and o["set"]["name"] == "mcast_v4")
    assert groups["elem"] == ["239.1.1.1"]


@pytest.mark.parametrize(("protocols", "value"), [(["icmp"], "0"), (["ssh"], "1")])
def test_broadcast_mode_echo_sysctl(protocols: list[str], value: str) -> None:
    plan = compile_plan(persona(communication_mode="broadcast", allowed_protocols=protocols), FACTS)
    assert Sysctl("net.ipv4.icmp_echo_ignore_broadcasts", value) in plan.sysctls
    assert not any("drop_broadcast" in r for r in chain_rules(plan, "input"))


def test_every_drop_is_counted() -> None:
    plan = compile_plan(
        persona(
            communication_mode="restricted",
            security_profile="high",
            allowed_protocols=["icmp", "ssh"],
            peers=[{"persona": "api"}],
            qos_parameters={"ingress_rate": "10mbit", "max_connections": 5},
        ),
        FACTS,
    )
    for obj in plan.nftables:
        if "rule" in obj:
            expr = obj["rule"]["expr"]
            if {"drop": None} in expr:
                assert expr[expr.index({"drop": None}) - 1]["counter"].startswith("drop_"), expr
