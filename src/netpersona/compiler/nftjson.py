"""Builders for the libnftables JSON the compiler emits (libnftables-json(5)).

Small functions, one per construct, so the ruleset module reads like the rules it makes and
no rule is ever put together by formatting strings.
"""

from __future__ import annotations

from typing import Any

from netpersona.model.jsontree import JSON

Expr = Any


def payload(protocol: str, field: str) -> JSON:
    return {"payload": {"protocol": protocol, "field": field}}


def meta(key: str) -> JSON:
    return {"meta": {"key": key}}


def ct(key: str) -> JSON:
    return {"ct": {"key": key}}


def fib_daddr_type() -> JSON:
    return {"fib": {"result": "type", "flags": ["daddr"]}}


def socket(key: str) -> JSON:
    """A property of the local socket the packet would be delivered to (no match if none)."""
    return {"socket": {"key": key}}


def fib_saddr_oif(*, strict: bool) -> JSON:
    """The interface a reply to the source would leave by; with ``strict`` only if it is the
    one the packet came in on (nft(8), FIB EXPRESSIONS: reverse path filtering)."""
    return {"fib": {"result": "oif", "flags": ["saddr", "iif"] if strict else ["saddr"]}}


def match(left: Expr, right: Expr, op: str = "==") -> JSON:
    return {"match": {"op": op, "left": left, "right": right}}


def anon_set(values: list[Any]) -> Expr:
    """A literal set; a single value is written bare, as nft itself lists it."""
    return values[0] if len(values) == 1 else {"set": values}


def prefix(network: str) -> JSON:
    address, _, length = network.partition("/")
    return {"prefix": {"addr": address, "len": int(length)}}


def port_value(first: int, last: int) -> Expr:
    return first if first == last else {"range": [first, last]}


def counter(name: str) -> JSON:
    return {"counter": name}


def limit_packets(rate: int, burst: int, *, over: bool = True) -> JSON:
    return {"limit": {"rate": rate, "per": "second", "burst": burst, "inv": over}}


def limit_bytes(rate_bytes: int, burst_bytes: int, *, over: bool = True) -> JSON:
    return {
        "limit": {
            "rate": rate_bytes,
            "rate_unit": "bytes",
            "per": "second",
            "burst": burst_bytes,
            "burst_unit": "bytes",
            "inv": over,
        }
    }


def meter(name: str, key: Expr, stmt: JSON, size: int) -> JSON:
    """A per-key stateful statement. nft 1.0.6 cannot declare ``flags dynamic`` sets in JSON;
    a meter makes its own dynamic set, which the JSON parser does accept."""
    return {"meter": {"name": name, "key": key, "stmt": stmt, "size": size}}


def vmap(key: Expr, map_name: str) -> JSON:
    return {"vmap": {"key": key, "data": f"@{map_name}"}}


def ct_count_over(limit: int) -> JSON:
    return {"ct count": {"val": limit, "inv": True}}


def mangle(key: Expr, value: Expr) -> JSON:
    return {"mangle": {"key": key, "value": value}}


ACCEPT: JSON = {"accept": None}
DROP: JSON = {"drop": None}
RETURN: JSON = {"return": None}


def jump(target: str) -> JSON:
    return {"jump": {"target": target}}


def goto(target: str) -> JSON:
    return {"goto": {"target": target}}
