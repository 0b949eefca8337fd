"""libnftables JSON builders for the renderer tests: short enough to read a rule at a glance."""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]
T = {"family": "inet", "table": "netpersona"}
ACCEPT: JSON = {"accept": None}
DROP: JSON = {"drop": None}


def payload(protocol: str, field: str) -> JSON:
    return {"payload": {"protocol": protocol, "field": field}}


def meta(key: str) -> JSON:
    return {"meta": {"key": key}}


def ct(key: str, **extra: str) -> JSON:
    return {"ct": {"key": key, **extra}}


def match(left: Any, right: Any, op: str = "==") -> JSON:
    return {"match": {"op": op, "left": left, "right": right}}


def prefix(addr: str, length: int) -> JSON:
    return {"prefix": {"addr": addr, "len": length}}


def rng(low: Any, high: Any) -> JSON:
    return {"range": [low, high]}


def rule(chain: str, *expr: JSON, comment: str | None = None) -> JSON:
    body: JSON = {**T, "chain": chain, "expr": list(expr)}
    if comment is not None:
        body["comment"] = comment
    return {"rule": body}


def chain(name: str, hook: str | None = None, prio: int = 0, policy: str = "accept") -> JSON:
    body: JSON = {**T, "name": name}
    if hook is not None:
        body.update({"type": "filter", "hook": hook, "prio": prio, "policy": policy})
    return {"chain": body}


def named(kind: str, name: str, **extra: Any) -> JSON:
    return {kind: {**T, "name": name, **extra}}


# The left side each group of bare symbolic constants is checked against.
SYMBOL_LEFT: dict[str, JSON] = {
    "ct state": ct("state"),
    "ct direction": ct("direction"),
    "meta nfproto": meta("nfproto"),
    "meta l4proto": meta("l4proto"),
    "meta pkttype": meta("pkttype"),
    "fib type": {"fib": {"result": "type", "flags": ["daddr"]}},
    "dscp": payload("ip6", "dscp"),
    "icmp type": payload("icmp", "type"),
    "icmpv6 type": payload("icmpv6", "type"),
    "tcp flags": payload("tcp", "flags"),
}
