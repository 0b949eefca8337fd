# ruff: noqa: E501  (rules of the corpus read best one a line)
"""Kernel round trip of the renderer: the nft script builds exactly the table the JSON builds.

Each corpus batch is loaded as JSON (``nft -j -f -``) in one throwaway namespace and rendered
and loaded as text (``nft -c -f -``, then ``nft -f -``) in another; the two kernels must then
list the same table (``nft -j list``, handles aside). The corpus together uses every construct
the renderer supports, with ip and ip6 payloads, and the compiler's own plans for the examples.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netpersona.cli.plan_cmd import load_facts, load_persona
from netpersona.compiler import compile_plan
from netpersona.compiler.plan import replace_table_batch
from netpersona.nftables import render_batch
from netpersona.nftables.expressions import SYMBOLIC_CONSTANTS
from netpersona.testing.netns import Netns, netns_group
from tests.golden.test_golden import EXAMPLES, facts_for
from tests.nftables.builders import (
    ACCEPT,
    DROP,
    JSON,
    SYMBOL_LEFT,
    T,
    chain,
    ct,
    match,
    meta,
    named,
    payload,
    prefix,
    rng,
    rule,
)


def _objects() -> list[JSON]:
    """Every kind of object, both address families."""
    return [
        {"table": {"family": "inet", "name": "netpersona"}},
        named("counter", "drop_not_peer"),
        named("counter", "drop_protocol", packets=7, bytes=700),
        named(
            "set",
            "peer_addrs_v4",
            type="ipv4_addr",
            flags=["interval"],
            elem=[prefix("10.0.0.0", 24), rng("10.1.0.1", "10.1.0.9"), "192.168.1.1"],
        ),
        named(
            "set",
            "peer_addrs_v6",
            type="ipv6_addr",
            flags=["interval"],
            elem=[prefix("fd00::", 64), rng("fd01::1", "fd01::9"), "fd02::1"],
        ),
        named(
            "set",
            "mcast_v4",
            type="ipv4_addr",
            flags=["constant"],
            elem=["239.1.1.1", "224.0.0.251"],
        ),
        named("set", "echo_v4", type="ipv4_addr", flags=["timeout"], timeout=60, size=65535),
        named(
            "set", "echo_v6", type="ipv6_addr", flags=["timeout"], timeout=60, **{"gc-interval": 5}
        ),
        named(
            "set",
            "stale",
            type="ipv4_addr",
            flags=["timeout"],
            policy="memory",
            elem=[{"elem": {"val": "10.9.0.1", "timeout": 30, "comment": "an element"}}],
        ),
        named(
            "set",
            "conc",
            type=["ipv4_addr", "inet_proto", "inet_service"],
            elem=[{"concat": ["10.0.0.1", "tcp", 22]}, {"concat": ["10.0.0.2", "udp", 53]}],
        ),
        named(
            "set",
            "conc_nets",
            type=["ipv6_addr", "inet_service"],
            flags=["interval"],
            elem=[{"concat": [prefix("fd00::", 16), rng(1000, 2000)]}],
        ),
        named("set", "conn_v4", type="ipv4_addr", size=1000),
        named(
            "map",
            "dscp_of_v6",
            type="ipv6_addr",
            map="dscp",
            flags=["interval"],
            elem=[["fd00::1", "cs5"], [prefix("fd01::", 64), "af41"], ["fd02::1", 46]],
        ),
        named(
            "map",
            "mark_of_v4",
            type="ipv4_addr",
            map="mark",
            elem=[["10.0.0.1", 7], ["10.0.0.2", 8]],
        ),
        chain("dscp_cs5"),
        chain("in_new"),
        chain("out_proto"),
        chain("input", "input"),
        chain("output", "output", 0, "accept"),
        chain("forward", "forward", 10, "drop"),
        chain("mark_out", "output", -150),
        {"chain": {**T, "name": "route_out", "type": "route", "hook": "output", "prio": -100}},
        # A verdict map's elements name chains, so it comes after them.
        named(
            "map",
            "peer_dscp_v4",
            type="ipv4_addr",
            map="verdict",
            elem=[
                ["10.0.0.1", {"jump": {"target": "dscp_cs5"}}],
                ["10.0.0.2", {"goto": {"target": "dscp_cs5"}}],
                ["10.0.0.3", ACCEPT],
            ],
        ),
        named("map", "peer_dscp_v6", type="ipv6_addr", map="verdict"),
        named(
            "map",
            "port_mark",
            type=["inet_proto", "inet_service"],
            map="mark",
            elem=[[{"concat": ["tcp", 22]}, 1]],
        ),
    ]


def _v4_v6_rules() -> list[JSON]:
    rules = []
    for ip, saddr, net, mcast in (
        ("ip", "10.0.0.1", "10.0.0.0", "224.0.0.0"),
        ("ip6", "fd00::1", "fd00::", "ff00::"),
    ):
        v = "v4" if ip == "ip" else "v6"
        rules += [
            rule(
                "input",
                match(payload(ip, "saddr"), f"@peer_addrs_{v}"),
                {"goto": {"target": "in_new"}},
            ),
            rule(
                "input",
                match(payload(ip, "saddr"), f"@peer_addrs_{v}", "!="),
                {"counter": "drop_not_peer"},
                DROP,
            ),
            rule("input", match(payload(ip, "daddr"), prefix(mcast, 4 if ip == "ip" else 8)), DROP),
            rule(
                "input",
                match(payload(ip, "saddr"), prefix(net, 16), "!="),
                match(payload(ip, "daddr"), saddr),
                ACCEPT,
            ),
            rule("input", match(payload(ip, "saddr"), {"set": [saddr, prefix(net, 24)]}), ACCEPT),
            rule(
                "input",
                match(payload(ip, "dscp"), "cs5"),
                match(payload(ip, "dscp"), rng("cs1", "cs3"), "!="),
                ACCEPT,
            ),
            rule(
                "output", match(payload(ip, "daddr"), rng(saddr, saddr.replace("1", "9"))), ACCEPT
            ),
            rule("mark_out", {"vmap": {"key": payload(ip, "daddr"), "data": f"@peer_dscp_{v}"}}),
            rule("mark_out", {"mangle": {"key": payload(ip, "dscp"), "value": "cs5"}}),
            rule("mark_out", {"mangle": {"key": payload(ip, "dscp"), "value": 46}}),
            rule(
                "in_new",
                match(payload("icmp" if ip == "ip" else "icmpv6", "type"), "echo-request"),
                {
                    "set": {
                        "op": "add",
                        "elem": payload(ip, "saddr"),
                        "set": f"@echo_{v}",
                        "stmt": [
                            {"limit": {"rate": 10, "per": "second", "burst": 20, "inv": True}}
                        ],
                    }
                },
                {"counter": "drop_protocol"},
                DROP,
            ),
            rule(
                "in_new",
                {
                    "set": {
                        "op": "update",
                        "elem": {"elem": {"val": payload(ip, "saddr"), "timeout": 10}},
                        "set": f"@echo_{v}",
                    }
                },
            ),
            rule(
                "in_new",
                match(meta("nfproto"), "ipv4" if ip == "ip" else "ipv6"),
                match(ct("state"), "new", "in"),
                {
                    "meter": {
                        "name": f"connlimit_{v}",
                        "key": payload(ip, "saddr"),
                        "stmt": {"ct count": {"val": 10, "inv": True}},
                        "size": 65535,
                    }
                },
                DROP,
                comment="max_connections per source",
            ),
        ]
    return rules


def _other_rules() -> list[JSON]:
    fib = {"fib": {"result": "type", "flags": ["daddr"]}}
    return [
        rule("dscp_cs5", {"mangle": {"key": payload("ip", "dscp"), "value": "cs5"}}),
        rule("input", match(meta("iif"), "lo"), ACCEPT),
        rule(
            "input",
            match(meta("iifname"), "eth0"),
            match(meta("oifname"), "lo", "!="),
            {"jump": {"target": "in_new"}},
        ),
        rule("input", match(meta("iifname"), "veth*"), match(meta("oif"), 1, "!="), ACCEPT),
        rule("input", match(ct("state"), ["established", "related"], "in"), ACCEPT),
        rule("input", match(ct("state"), "invalid", "in"), {"counter": None}, DROP),
        rule(
            "input",
            match(ct("state"), {"set": ["new", "untracked"]}),
            match(ct("direction"), "original"),
            {"return": None},
        ),
        rule("input", match(ct("state"), "established"), {"continue": None}),
        rule(
            "input",
            match(ct("state"), ["new", "invalid"]),
            match(ct("state"), ["related"], "!="),
            ACCEPT,
        ),
        rule("input", match(ct("ip saddr", dir="original"), "10.0.0.1"), ACCEPT),
        rule(
            "input",
            match(fib, "broadcast"),
            match(payload("udp", "dport"), 67),
            {"goto": {"target": "in_new"}},
            comment="dhcp server",
        ),
        rule("input", match(fib, "local", "!="), {"counter": {"packets": 0, "bytes": 0}}, DROP),
        rule(
            "input",
            match(meta("pkttype"), "broadcast"),
            match(meta("l4proto"), {"set": ["tcp", "udp"]}),
            match(payload("th", "dport"), {"set": [22, rng(1000, 2000)]}),
            ACCEPT,
        ),
        rule("input", match(meta("l4proto"), {"set": ["igmp", "gre", "esp", "ah"]}), ACCEPT),
        rule(
            "input",
            match(meta("mark"), 10, ">="),
            match(meta("mark"), 20, "<"),
            match(meta("priority"), 5, "<="),
            match(meta("length"), 1000, ">"),
            ACCEPT,
        ),
        rule(
            "input",
            match(payload("tcp", "flags"), "syn", "in"),
            match(payload("tcp", "flags"), ["syn", "ack"], "in"),
            ACCEPT,
        ),
        rule(
            "input",
            match(
                {"concat": [payload("ip", "saddr"), meta("l4proto"), payload("th", "dport")]},
                "@conc",
            ),
            ACCEPT,
        ),
        rule(
            "input",
            match({"concat": [payload("ip6", "saddr"), payload("th", "dport")]}, "@conc_nets"),
            ACCEPT,
        ),
        rule(
            "input",
            match(
                {"concat": [payload("ip", "saddr"), payload("th", "dport")]},
                {
                    "set": [
                        {"concat": ["10.0.0.1", 22]},
                        {"concat": [prefix("10.0.0.0", 8), rng(1, 2)]},
                    ]
                },
            ),
            ACCEPT,
        ),
        rule(
            "input",
            match({"numgen": {"mode": "random", "mod": 100}}, 5, "<"),
            {"log": {"prefix": "np sample: ", "level": "info"}},
        ),
        rule("input", match({"numgen": {"mode": "inc", "mod": 4, "offset": 1}}, rng(2, 3)), ACCEPT),
        rule("input", match({"payload": {"base": "nh", "offset": 64, "len": 8}}, 1), ACCEPT),
        rule(
            "input",
            {
                "limit": {
                    "rate": 125000,
                    "rate_unit": "bytes",
                    "per": "second",
                    "burst": 15000,
                    "burst_unit": "bytes",
                    "inv": True,
                }
            },
            {"counter": "drop_protocol"},
            DROP,
            comment="ingress_rate",
        ),
        rule(
            "input",
            {
                "limit": {
                    "rate": 1,
                    "rate_unit": "mbytes",
                    "per": "minute",
                    "burst": 100,
                    "burst_unit": "kbytes",
                }
            },
            ACCEPT,
        ),
        rule("input", {"limit": {"rate": 1, "rate_unit": "kbytes", "per": "hour"}}, ACCEPT),
        rule("input", {"limit": {"rate": 10, "per": "second"}}, ACCEPT),
        rule("input", {"limit": {"rate": 3, "per": "day", "burst": 0, "inv": True}}, DROP),
        rule("input", {"ct count": {"val": 100, "inv": True}}, DROP),
        rule(
            "input",
            match(payload("ip", "saddr"), "@conn_v4", "!="),
            {
                "set": {
                    "op": "add",
                    "elem": payload("ip", "saddr"),
                    "set": "@conn_v4",
                    "stmt": [{"ct count": {"val": 5}}],
                }
            },
        ),
        rule(
            "input",
            {"log": None},
            {"log": {"group": 2, "snaplen": 64, "queue-threshold": 3}},
            {"log": {"flags": ["tcp sequence", "tcp options", "ip options"]}},
            {"log": {"level": "audit"}},
            {"log": {"flags": "all"}},
        ),
        rule(
            "input",
            {
                "vmap": {
                    "key": payload("th", "dport"),
                    "data": {
                        "set": [
                            [22, ACCEPT],
                            [rng(100, 200), {"goto": {"target": "in_new"}}],
                            [5, DROP],
                        ]
                    },
                }
            },
        ),
        rule(
            "input",
            {
                "meter": {
                    "name": "echo_meter",
                    "key": payload("ip", "saddr"),
                    "stmt": {"limit": {"rate": 1, "per": "second"}},
                }
            },
        ),
        rule("out_proto", match(meta("nfproto"), "ipv4"), match(meta("pkttype"), "host"), ACCEPT),
        rule(
            "mark_out",
            match(payload("tcp", "dport"), 443),
            {"mangle": {"key": meta("priority"), "value": "6e70:10"}},
            comment="control traffic: top class",
        ),
        rule(
            "mark_out",
            {"mangle": {"key": meta("mark"), "value": 1}},
            {
                "mangle": {
                    "key": ct("mark"),
                    "value": {"map": {"key": payload("ip", "saddr"), "data": "@mark_of_v4"}},
                }
            },
        ),
        rule(
            "mark_out",
            {
                "mangle": {
                    "key": meta("mark"),
                    "value": {
                        "map": {"key": payload("ip", "daddr"), "data": {"set": [["10.0.0.1", 7]]}}
                    },
                }
            },
        ),
        rule(
            "mark_out",
            {
                "mangle": {
                    "key": meta("mark"),
                    "value": {
                        "map": {
                            "key": {"concat": [meta("l4proto"), payload("th", "dport")]},
                            "data": "@port_mark",
                        }
                    },
                }
            },
        ),
        rule("forward", {"counter": "drop_not_peer"}, DROP, comment="high profile: no forwarding"),
    ]


def _strings_rules() -> list[JSON]:
    """Strings that only quoting gets right, and what nft does with backslashes and '*'."""
    return [
        rule("input", match(meta("iifname"), "eth*"), ACCEPT, comment="a wildcard"),
        rule("input", match(meta("iifname"), "eth\\*"), ACCEPT, comment="an escaped star"),
        rule(
            "input",
            match(meta("iifname"), {"set": ["counter", "tcp", "5", "dummy-1.0"]}),
            ACCEPT,
            comment="keywords and numbers",
        ),
        rule("input", ACCEPT, comment="a$b #c;d 'e' café %s \\n {x} @y"),
        rule("input", match(meta("iifname"), "a\\"), ACCEPT, comment="ends in a backslash\\"),
        rule("input", {"log": {"prefix": "#c;d 'e' café %s \\n {x} @y "}}),
    ]


def _symbol_rules() -> list[JSON]:
    rules = []
    for group, words in SYMBOLIC_CONSTANTS.items():
        left = SYMBOL_LEFT[group]
        rules += [rule("input", match(left, word), comment=f"{group} {word}") for word in words]
        rules.append(rule("input", match(left, {"set": list(words)}), comment=group))
    return rules


def _elements_batch() -> JSON:
    return {"nftables": [
        {"add": named("element", "peer_addrs_v4", elem=["10.2.0.1", prefix("10.3.0.0", 16)])},
        {"delete": named("element", "peer_addrs_v4", elem=[prefix("10.0.0.0", 24)])},
        {"create": named("element", "peer_addrs_v6", elem="fd03::1")},
        {"add": named("element", "peer_dscp_v4", elem=[["10.0.0.9", {"jump": {"target": "dscp_cs5"}}]])},
        {"delete": named("element", "peer_dscp_v4", elem=[["10.0.0.1", {"jump": {"target": "dscp_cs5"}}]])},
        {"add": named("element", "conc", elem=[{"concat": ["10.0.0.3", "sctp", 9]}])},
        {"add": named("element", "stale", elem=[{"elem": {"val": "10.9.0.2", "timeout": 45}}])},
        {"flush": named("set", "mcast_v4")},
        {"flush": named("map", "mark_of_v4")},
        {"add": named("element", "mark_of_v4", elem=[["10.0.0.5", 9]])},
        {"delete": named("counter", "drop_protocol")},
        {"delete": named("chain", "route_out")},
        {"insert": rule("input", ACCEPT, comment="inserted first")},
        {"flush": named("chain", "out_proto")},
    ]}  # fmt: skip


def _without_counter_use(rules: list[JSON], name: str) -> list[JSON]:
    return [r for r in rules if {"counter": name} not in r["rule"]["expr"]]


CORPUS: dict[str, list[JSON]] = {
    "objects": [replace_table_batch(_objects())],
    "ip_and_ip6": [replace_table_batch(_objects() + _v4_v6_rules())],
    "statements": [replace_table_batch(_objects() + _other_rules())],
    "strings": [replace_table_batch(_objects() + _strings_rules())],
    "symbolic_constants": [replace_table_batch(_objects() + _symbol_rules())],
    # Deleting a counter needs it unreferenced: leave out the rules that name it.
    "element_updates": [
        replace_table_batch(_objects() + _without_counter_use(_v4_v6_rules() + _other_rules(), "drop_protocol")),
        _elements_batch(),
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def kernels() -> Iterator[tuple[Netns, Netns]]:
    """Two empty namespaces: A loads the JSON, B the rendered text."""
    with netns_group(2, prefix="nprender") as (a, b):
        yield a, b


def _without_handles(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_handles(v) for k, v in value.items() if k != "handle"}
    if isinstance(value, list):
        return [_without_handles(v) for v in value]
    return value


def _table(ns: Netns) -> list[JSON]:
    out = ns.run(["nft", "-j", "list", "table", "inet", "netpersona"]).stdout
    listing = json.loads(out)["nftables"]
    return [_without_handles(o) for o in listing if "metainfo" not in o]


def _load_json(ns: Netns, batch: JSON) -> None:
    ns.run(["nft", "-j", "-f", "-"], input=json.dumps(batch))


def _load_text(ns: Netns, script: str) -> None:
    ns.run(["nft", "-c", "-f", "-"], input=script)
    ns.run(["nft", "-f", "-"], input=script)


def _rules_added(batches: list[JSON]) -> int:
    return sum(1 for b in batches for c in b["nftables"] if "rule" in c.get("add", {}))


@pytest.mark.kernel
@pytest.mark.parametrize("case", CORPUS)
def test_text_builds_the_same_table_as_json(kernels: tuple[Netns, Netns], case: str) -> None:
    a, b = kernels
    for batch in CORPUS[case]:
        _load_json(a, batch)
        _load_text(b, render_batch(batch))
    from_json, from_text = _table(a), _table(b)
    if len(CORPUS[case]) == 1:  # not vacuous: every rule made it into the kernel
        assert len([o for o in from_json if "rule" in o]) == _rules_added(CORPUS[case])
    assert from_text == from_json


def _elements(listing: list[JSON], kind: str, name: str) -> list[Any]:
    (body,) = [o[kind] for o in listing if kind in o and o[kind]["name"] == name]
    return list(body.get("elem", []))


@pytest.mark.kernel
def test_element_updates_change_the_sets_in_place(kernels: tuple[Netns, Netns]) -> None:
    """The peer-set path: added, deleted and flushed elements, seen the same in both kernels."""
    a, b = kernels
    for batch in CORPUS["element_updates"]:
        _load_json(a, batch)
        _load_text(b, render_batch(batch))
    for listing in (_table(a), _table(b)):
        peers = _elements(listing, "set", "peer_addrs_v4")
        assert "10.2.0.1" in peers
        assert prefix("10.3.0.0", 16) in peers
        assert prefix("10.0.0.0", 24) not in peers
        assert _elements(listing, "set", "mcast_v4") == []
        assert _elements(listing, "map", "mark_of_v4") == [["10.0.0.5", 9]]
        dscp = _elements(listing, "map", "peer_dscp_v4")
        assert ["10.0.0.9", {"jump": {"target": "dscp_cs5"}}] in dscp
        assert all(element[0] != "10.0.0.1" for element in dscp)
        assert not any("counter" in o and o["counter"]["name"] == "drop_protocol" for o in listing)


@pytest.mark.kernel
def test_the_comparison_sees_a_difference(kernels: tuple[Netns, Netns]) -> None:
    """The round trip can fail: one operator changed is one rule listed differently."""
    a, b = kernels
    objects = [*_objects(), rule("input", match(ct("state"), "new", "in"), ACCEPT)]
    _load_json(a, replace_table_batch(objects))
    objects[-1] = rule("input", match(ct("state"), "new"), ACCEPT)
    _load_text(b, render_batch(replace_table_batch(objects)))
    assert _table(a) != _table(b)


@pytest.mark.kernel
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_compiled_examples_build_the_same_table(kernels: tuple[Netns, Netns], path: Path) -> None:
    """What ``netpersona plan --format nft`` prints is the table the applier loads."""
    a, b = kernels
    plan = compile_plan(load_persona(path), load_facts(facts_for(path.stem)))
    batch = replace_table_batch(plan.nftables_objects())
    _load_json(a, batch)
    _load_text(b, render_batch(batch))
    from_json = _table(a)
    assert len([o for o in from_json if "rule" in o]) == _rules_added([batch])
    assert _table(b) == from_json
