# ruff: noqa: E501  (tables of JSON and the nft text it must become read best one case a line)
"""The libnftables JSON -> nft script renderer: the text of each construct, and what it refuses.

That the text builds the same kernel state as the JSON is proved in test_roundtrip.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from netpersona.compiler.plan import replace_table_batch
from netpersona.nftables import render_batch
from netpersona.nftables.expressions import SYMBOLIC_CONSTANTS
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


def one(command: str, obj: JSON) -> str:
    """The text of a single command, without the newline."""
    text = render_batch({"nftables": [{command: obj}]})
    assert text.endswith("\n")
    assert text.count("\n") == 1
    return text[:-1]


def stmts(*expr: JSON) -> str:
    """The statements of one rule as text."""
    head = "add rule inet netpersona c "
    text = one("add", rule("c", *expr))
    assert text.startswith(head)
    return text[len(head) :]


# -- objects -----------------------------------------------------------------------------------


def test_replace_table_batch_renders_flat_commands_in_order() -> None:
    batch = replace_table_batch([{"table": {"family": "inet", "name": "netpersona"}}])
    assert render_batch(batch) == (
        "add table inet netpersona\ndelete table inet netpersona\nadd table inet netpersona\n"
    )


def test_an_empty_batch_is_an_empty_script() -> None:
    assert render_batch({"nftables": [{"metainfo": {"json_schema_version": 1}}]}) == ""


@pytest.mark.parametrize(
    ("command", "obj", "text"),
    [
        ("add", named("counter", "drop_not_peer"), "add counter inet netpersona drop_not_peer"),
        (
            "add",
            named("counter", "c", packets=3),
            "add counter inet netpersona c { packets 3 bytes 0 }",
        ),
        ("delete", named("counter", "c"), "delete counter inet netpersona c"),
        (
            "add",
            named("set", "peer_addrs_v4", type="ipv4_addr", flags=["interval"], elem=[prefix("10.0.0.0", 24)]),
            "add set inet netpersona peer_addrs_v4 { type ipv4_addr; flags interval; elements = { 10.0.0.0/24 }; }",
        ),
        (
            "add",
            named("set", "s", type="ipv6_addr", flags=["dynamic", "timeout"], timeout=60, size=65535),
            "add set inet netpersona s { type ipv6_addr; flags dynamic,timeout; timeout 60s; size 65535; }",
        ),
        (
            "create",
            named("set", "s", type="ipv4_addr", policy="memory", **{"gc-interval": 10}),
            "create set inet netpersona s { type ipv4_addr; gc-interval 10s; policy memory; }",
        ),
        (
            "add",
            named("set", "s", type=["ipv4_addr", "inet_service"], elem=[{"concat": ["10.0.0.1", 22]}]),
            "add set inet netpersona s { type ipv4_addr . inet_service; elements = { 10.0.0.1 . 22 }; }",
        ),
        (
            "add",
            named("set", "s", type="ipv4_addr", flags=["timeout"], elem=[{"elem": {"val": "10.0.0.1", "timeout": 30, "comment": "x y"}}]),
            'add set inet netpersona s { type ipv4_addr; flags timeout; elements = { 10.0.0.1 timeout 30s comment "x y" }; }',
        ),
        (
            "add",
            named("map", "m", type="ipv6_addr", map="dscp", elem=[["fd00::1", "cs5"], [prefix("fd01::", 64), 46]]),
            "add map inet netpersona m { type ipv6_addr : dscp; elements = { fd00::1 : cs5, fd01::/64 : 46 }; }",
        ),
        (
            "add",
            named("map", "v", type="ipv4_addr", map="verdict", elem=[["10.0.0.1", {"jump": {"target": "c"}}], ["10.0.0.2", DROP]]),
            "add map inet netpersona v { type ipv4_addr : verdict; elements = { 10.0.0.1 : jump c, 10.0.0.2 : drop }; }",
        ),
        ("flush", named("set", "s"), "flush set inet netpersona s"),
        ("delete", named("map", "m"), "delete map inet netpersona m"),
        ("add", chain("in_new"), "add chain inet netpersona in_new"),
        (
            "add",
            chain("input", "input"),
            "add chain inet netpersona input { type filter hook input priority 0; policy accept; }",
        ),
        (
            "add",
            {"chain": {**T, "name": "mark_out", "type": "route", "hook": "output", "prio": -150}},
            "add chain inet netpersona mark_out { type route hook output priority -150; }",
        ),
        ("flush", named("chain", "c"), "flush chain inet netpersona c"),
        (
            "add",
            named("element", "peer_addrs_v6", elem=["fd00::1", rng("fd00::10", "fd00::20")]),
            "add element inet netpersona peer_addrs_v6 { fd00::1, fd00::10-fd00::20 }",
        ),
        (
            "delete",
            named("element", "peer_dscp_v4", elem=[["10.0.0.1", "af41"]]),
            "delete element inet netpersona peer_dscp_v4 { 10.0.0.1 : af41 }",
        ),
        (
            "add",
            named("element", "s", elem="10.0.0.1"),
            "add element inet netpersona s { 10.0.0.1 }",
        ),
        (
            "insert",
            rule("input", ACCEPT, comment="first"),
            'insert rule inet netpersona input accept comment "first"',
        ),
    ],
)  # fmt: skip
def test_object(command: str, obj: JSON, text: str) -> None:
    assert one(command, obj) == text


# -- statements and expressions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "text"),
    [
        ([ACCEPT, DROP, {"return": None}, {"continue": None}], "accept drop return continue"),
        ([{"jump": {"target": "in_new"}}, {"goto": {"target": "out_proto"}}], "jump in_new goto out_proto"),
        ([match(payload("ip", "saddr"), "@peer_addrs_v4")], "ip saddr @peer_addrs_v4"),
        ([match(payload("ip6", "saddr"), "@peer_addrs_v6", "!=")], "ip6 saddr != @peer_addrs_v6"),
        ([match(payload("ip", "daddr"), prefix("224.0.0.0", 4))], "ip daddr == 224.0.0.0/4"),
        ([match(payload("ip6", "daddr"), prefix("ff00::", 8))], "ip6 daddr == ff00::/8"),
        ([match(payload("th", "dport"), rng(1000, 2000))], "th dport == 1000-2000"),
        ([match(payload("ip", "dscp"), rng("cs1", "cs3"))], 'ip dscp == "cs1"-"cs3"'),
        ([match(payload("tcp", "dport"), {"set": [22, rng(80, 81)]})], "tcp dport { 22, 80-81 }"),
        ([match(ct("state"), ["established", "related"], "in")], "ct state established,related"),
        ([match(payload("tcp", "flags"), "syn", "in")], "tcp flags syn"),
        ([match(ct("state"), "new")], "ct state == new"),
        ([match(ct("state"), ["new", "invalid"], "!=")], "ct state != new,invalid"),
        ([match(ct("direction"), "reply", "!=")], "ct direction != reply"),
        ([match(ct("ip saddr", dir="original"), "10.0.0.1")], "ct original ip saddr == 10.0.0.1"),
        ([match(meta("l4proto"), {"set": ["tcp", "udp"]})], "meta l4proto { tcp, udp }"),
        ([match(meta("iifname"), "eth0"), match(meta("oifname"), "wg*", "!=")], 'meta iifname == "eth0" meta oifname != "wg*"'),
        ([match(meta("iif"), "lo"), match(meta("oif"), 1)], 'meta iif == "lo" meta oif == 1'),
        ([match(meta("nfproto"), "ipv6"), match(meta("pkttype"), "multicast")], "meta nfproto == ipv6 meta pkttype == multicast"),
        ([match(meta("mark"), 10, "<"), match(meta("mark"), 1, ">"), match(meta("priority"), 2, "<="), match(meta("length"), 9, ">=")],
         "meta mark < 10 meta mark > 1 meta priority <= 2 meta length >= 9"),
        ([match({"fib": {"result": "type", "flags": ["daddr"]}}, "broadcast")], "fib daddr type == broadcast"),
        ([match({"fib": {"result": "oif", "flags": ["saddr", "iif"]}}, 0, "!=")], "fib saddr . iif oif != 0"),
        ([match({"fib": {"result": "oif", "flags": ["saddr", "iif"]}}, False)], "fib saddr . iif oif missing"),
        ([match({"fib": {"result": "oif", "flags": ["saddr"]}}, False, "!=")], "fib saddr oif exists"),
        ([match({"socket": {"key": "transparent"}}, {"set": [0, 1]})], "socket transparent { 0, 1 }"),
        ([match({"numgen": {"mode": "random", "mod": 100}}, 5, "<")], "numgen random mod 100 < 5"),
        ([match({"numgen": {"mode": "inc", "mod": 4, "offset": 1}}, 2)], "numgen inc mod 4 offset 1 == 2"),
        ([match({"payload": {"base": "nh", "offset": 8, "len": 8}}, 64)], "@nh,8,8 == 64"),
        ([match({"concat": [payload("ip", "saddr"), meta("l4proto"), payload("th", "dport")]}, "@conc")],
         "ip saddr . meta l4proto . th dport @conc"),
        ([match({"concat": [payload("ip6", "saddr"), payload("th", "dport")]}, {"set": [{"concat": [prefix("fd00::", 8), rng(1, 2)]}]})],
         "ip6 saddr . th dport { fd00::/8 . 1-2 }"),
        ([{"counter": "drop_not_peer"}, DROP], 'counter name "drop_not_peer" drop'),
        ([{"counter": None}, {"counter": {"packets": 0, "bytes": 5}}], "counter counter packets 0 bytes 5"),
        ([{"limit": {"rate": 10, "per": "second"}}], "limit rate 10/second"),
        ([{"limit": {"rate": 10, "per": "second", "burst": 20, "inv": True}}], "limit rate over 10/second burst 20 packets"),
        ([{"limit": {"rate": 1, "per": "minute", "rate_unit": "mbytes", "burst": 100, "burst_unit": "kbytes"}}],
         "limit rate 1 mbytes/minute burst 100 kbytes"),
        ([{"limit": {"rate": 125000, "rate_unit": "bytes", "per": "second", "burst": 15000, "burst_unit": "bytes", "inv": True}}],
         "limit rate over 125000 bytes/second burst 15000 bytes"),
        ([{"mangle": {"key": payload("ip", "dscp"), "value": "cs5"}}], "ip dscp set cs5"),
        ([{"mangle": {"key": payload("ip6", "dscp"), "value": {"map": {"key": payload("ip6", "daddr"), "data": "@m"}}}}],
         "ip6 dscp set ip6 daddr map @m"),
        ([{"mangle": {"key": meta("priority"), "value": "6e70:10"}}], 'meta priority set "6e70:10"'),
        ([{"mangle": {"key": meta("mark"), "value": 1}}, {"mangle": {"key": ct("mark"), "value": 2}}], "meta mark set 1 ct mark set 2"),
        ([{"mangle": {"key": meta("mark"), "value": {"map": {"key": payload("ip", "saddr"), "data": {"set": [["10.0.0.1", 7]]}}}}}],
         "meta mark set ip saddr map { 10.0.0.1 : 7 }"),
        ([{"set": {"op": "add", "elem": payload("ip", "saddr"), "set": "@echo_v4",
                   "stmt": [{"limit": {"rate": 10, "per": "second", "burst": 20, "inv": True}}]}}],
         "add @echo_v4 { ip saddr limit rate over 10/second burst 20 packets }"),
        ([{"set": {"op": "update", "elem": {"elem": {"val": payload("ip6", "saddr"), "timeout": 10}}, "set": "@s"}}],
         "update @s { ip6 saddr timeout 10s }"),
        ([{"set": {"op": "add", "elem": payload("ip", "saddr"), "set": "@s", "stmt": [{"ct count": {"val": 5, "inv": True}}]}}],
         "add @s { ip saddr ct count over 5 }"),
        ([{"ct count": {"val": 3}}, {"ct count": {"val": 4, "inv": True}}], "ct count 3 ct count over 4"),
        ([{"meter": {"name": "echo_v6", "key": payload("ip6", "saddr"), "stmt": {"limit": {"rate": 1, "per": "second"}}, "size": 65535}}],
         "meter echo_v6 size 65535 { ip6 saddr limit rate 1/second }"),
        ([{"log": None}, {"log": {"prefix": "np: ", "level": "info"}}], 'log log prefix "np: " level info'),
        ([{"log": {"group": 2, "snaplen": 64, "queue-threshold": 3, "flags": ["tcp sequence", "ip options"]}}],
         "log group 2 snaplen 64 queue-threshold 3 flags tcp sequence flags ip options"),
        ([{"log": {"flags": "all"}}], "log flags all"),
        ([{"vmap": {"key": payload("ip", "daddr"), "data": "@peer_dscp_v4"}}], "ip daddr vmap @peer_dscp_v4"),
        ([{"vmap": {"key": payload("th", "dport"), "data": {"set": [[22, ACCEPT], [rng(100, 200), {"goto": {"target": "x"}}]]}}}],
         "th dport vmap { 22 : accept, 100-200 : goto x }"),
    ],
)  # fmt: skip
def test_statements(expr: list[JSON], text: str) -> None:
    assert stmts(*expr) == text


def test_rule_comment_is_quoted_last() -> None:
    text = one("add", rule("input", ACCEPT, comment="dhcp client; #1"))
    assert text == 'add rule inet netpersona input accept comment "dhcp client; #1"'


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("10.0.0.1", "10.0.0.1"),
        ("fd00::1", "fd00::1"),
        ("FD00::1", '"FD00::1"'),  # not canonical: left to nft's own address parser
        ("fe80::1%eth0", '"fe80::1%eth0"'),
        ("eth0", '"eth0"'),
        ("eth\\*", '"eth\\*"'),
        ("22", '"22"'),
        ("10.0.0.0/24", '"10.0.0.0/24"'),  # a string, as in JSON: not a prefix
        ("counter", '"counter"'),  # an nft keyword
        ("café", '"café"'),
        ("", '""'),
        ("*", "*"),
    ],
)
def test_strings_are_quoted_unless_known_to_read_back_bare(value: str, text: str) -> None:
    assert stmts(match(meta("iifname"), value)) == f"meta iifname == {text}"


@pytest.mark.parametrize(
    ("group", "word"), [(g, w) for g, words in SYMBOLIC_CONSTANTS.items() for w in words]
)
def test_symbolic_constants_are_bare(group: str, word: str) -> None:
    assert stmts(match(SYMBOL_LEFT[group], word)).endswith(f" == {word}")


# -- refusals ----------------------------------------------------------------------------------

BAD_BATCHES: list[tuple[str, Any, str, str]] = [
    ("not a document", [], "/", "expected an object"),
    ("no command list", {"nftables": {}}, "/nftables", "expected a list"),
    ("unknown top-level key", {"nftables": [], "x": 1}, "/x", "not supported"),
    ("unknown command", {"nftables": [{"rename": {"chain": {}}}]}, "/nftables/0/rename", '"rename chain"'),
    ("delete rule", {"nftables": [{"delete": rule("c", ACCEPT)}]}, "/nftables/0/delete", '"delete rule"'),
    ("unsupported expression",
     {"nftables": [{"add": rule("c", match(meta("mark"), {"jhash": {"mod": 2, "expr": meta("mark")}}))}]},
     "/nftables/0/add/rule/expr/0/match/right/jhash", 'expression "jhash" is not supported'),
    ("unsupported statement", {"nftables": [{"add": rule("c", ACCEPT, {"notrack": None})}]},
     "/nftables/0/add/rule/expr/1/notrack", 'statement "notrack" is not supported'),
    ("unsupported left side", {"nftables": [{"add": rule("c", match("10.0.0.1", payload("ip", "saddr")))}]},
     "/nftables/0/add/rule/expr/0/match/left", "unsupported left side"),
    ("unknown operator", {"nftables": [{"add": rule("c", match(meta("mark"), 1, "&"))}]},
     "/nftables/0/add/rule/expr/0/match/op", "operator"),
    ("list with <", {"nftables": [{"add": rule("c", match(ct("state"), ["new"], "<"))}]},
     "/nftables/0/add/rule/expr/0/match/right", '"in", "==" and "!="'),
    ("list as a value", {"nftables": [{"add": rule("c", {"mangle": {"key": meta("mark"), "value": [1]}})}]},
     "/nftables/0/add/rule/expr/0/mangle/value", "right side of a match"),
    ("limit without per", {"nftables": [{"add": rule("c", {"limit": {"rate": 10}})}]},
     "/nftables/0/add/rule/expr/0/limit", 'missing property "per"'),
    ("boolean", {"nftables": [{"add": rule("c", match(meta("mark"), True))}]},
     "/nftables/0/add/rule/expr/0/match/right", "only compare with"),
    ("boolean fib with <", {"nftables": [{"add": rule("c", match({"fib": {"result": "oif", "flags": ["saddr"]}}, True, "<"))}]},
     "/nftables/0/add/rule/expr/0/match/right", "only compare with"),
    ("negative number", {"nftables": [{"add": rule("c", match(meta("mark"), -1))}]},
     "/nftables/0/add/rule/expr/0/match/right", "non-negative"),
    ("unknown property", {"nftables": [{"add": named("set", "s", type="ipv4_addr", comment="x")}]},
     "/nftables/0/add/set/comment", "not supported"),
    ("missing property", {"nftables": [{"add": {"set": {**T, "name": "s"}}}]},
     "/nftables/0/add/set", 'missing property "type"'),
    ("name with a space", {"nftables": [{"add": chain("my chain")}]},
     "/nftables/0/add/chain/name", "cannot be written as an nft name"),
    ("jump to a bad name", {"nftables": [{"add": rule("c", {"jump": {"target": "a b"}})}]},
     "/nftables/0/add/rule/expr/0/jump/target", "nft name"),
    ("quote in a comment", {"nftables": [{"add": rule("c", ACCEPT, comment='say "hi"')}]},
     "/nftables/0/add/rule/comment", "quote or control character"),
    ("newline in an ifname", {"nftables": [{"add": rule("c", match(meta("iifname"), "a\nb"))}]},
     "/nftables/0/add/rule/expr/0/match/right", "quote or control character"),
    ("dollar in a log prefix", {"nftables": [{"add": rule("c", {"log": {"prefix": "a$b"}})}]},
     "/nftables/0/add/rule/expr/0/log/prefix", "'$'"),
    ("named priority", {"nftables": [{"add": {"chain": {**T, "name": "c", "type": "filter", "hook": "input", "prio": "filter"}}}]},
     "/nftables/0/add/chain/prio", "integer priority"),
    ("partial base chain", {"nftables": [{"add": {"chain": {**T, "name": "c", "hook": "input"}}}]},
     "/nftables/0/add/chain", "type, hook and prio"),
    ("policy on a regular chain", {"nftables": [{"add": {"chain": {**T, "name": "c", "policy": "drop"}}}]},
     "/nftables/0/add/chain/policy", "base chain"),
    ("unknown family", {"nftables": [{"add": {"table": {"family": "inet6", "name": "t"}}}]},
     "/nftables/0/add/table/family", "not one of"),
    ("unknown set flag", {"nftables": [{"add": named("set", "s", type="ipv4_addr", flags=["interval", "eval"])}]},
     "/nftables/0/add/set/flags/1", "not one of"),
    ("empty elements", {"nftables": [{"add": named("element", "s", elem=[])}]},
     "/nftables/0/add/element/elem", "empty list"),
    ("map element not a pair", {"nftables": [{"add": named("map", "m", type="ipv4_addr", map="mark", elem=["10.0.0.1"])}]},
     "/nftables/0/add/map/elem/0", "[key, value] pair"),
    ("pair in a set", {"nftables": [{"add": named("set", "s", type="ipv4_addr", elem=[["10.0.0.1", 1]])}]},
     "/nftables/0/add/set/elem/0", "only valid in a map"),
    ("ct family", {"nftables": [{"add": rule("c", match(ct("saddr", family="ip"), "10.0.0.1"))}]},
     "/nftables/0/add/rule/expr/0/match/left/ct/family", "not supported"),
    ("verdict with a body", {"nftables": [{"add": rule("c", {"accept": {}})}]},
     "/nftables/0/add/rule/expr/0/accept", "expected null"),
    ("half a counter", {"nftables": [{"add": rule("c", {"counter": {"packets": 1}})}]},
     "/nftables/0/add/rule/expr/0/counter", 'missing property "bytes"'),
    ("named limit", {"nftables": [{"add": rule("c", {"limit": "lim"})}]},
     "/nftables/0/add/rule/expr/0/limit", "named limit"),
    ("drop inside a set statement",
     {"nftables": [{"add": rule("c", {"set": {"op": "add", "elem": payload("ip", "saddr"), "set": "@s", "stmt": [DROP]}})}]},
     "/nftables/0/add/rule/expr/0/set/stmt/0/drop", "not supported inside"),
    ("set statement without @", {"nftables": [{"add": rule("c", {"set": {"op": "add", "elem": payload("ip", "saddr"), "set": "s"}})}]},
     "/nftables/0/add/rule/expr/0/set/set", '"@setname"'),
    ("tilde and slash escaped in the pointer", {"nftables": [{"add": rule("c", {"a/b~c": None})}]},
     "/nftables/0/add/rule/expr/0/a~1b~0c", "not supported"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("batch", "pointer", "message"),
    [pytest.param(b, p, m, id=i) for i, b, p, m in BAD_BATCHES],
)
def test_unsupported_input_is_refused_naming_its_path(
    batch: Any, pointer: str, message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(pointer)}: ") as caught:
        render_batch(batch)
    assert message in str(caught.value)


def test_every_symbol_group_has_a_kernel_check() -> None:
    assert set(SYMBOL_LEFT) == set(SYMBOLIC_CONSTANTS)
