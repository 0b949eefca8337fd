"""Comparing the nftables table the kernel lists with what a plan asked for.

``nft -j list`` does not echo input back verbatim (it adds handles and counter values, prints
DSCP values by name, may merge interval elements), so the comparison works on a normalised
view: :func:`normalise_listing` for exact before/after comparisons of the kernel with itself
(drift, rollback), and :func:`table_mismatches` for the plan against the kernel (readback).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from ipaddress import ip_address, ip_network
from typing import Any

from netpersona.model.dscp import DSCP_NAMES
from netpersona.model.jsontree import JSON

__all__ = ["element_keys", "normalise_listing", "table_mismatches"]


_VOLATILE = ("handle", "packets", "bytes", "expires")


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _is_dynamic(body: JSON) -> bool:
    flags = body.get("flags", [])
    return "dynamic" in flags or "timeout" in flags


def normalise_listing(objects: Iterable[JSON], *, with_elements: bool = True) -> list[JSON]:
    """Objects without handles, counter values, expiry times or the elements of dynamic sets.

    Two listings of an unchanged table normalise equal, however much traffic passed.
    """
    out = []
    for obj in objects:
        kind = next(iter(obj))
        if kind == "metainfo":
            continue
        body = _scrub(obj[kind])
        if kind in ("set", "map") and (_is_dynamic(body) or not with_elements):
            body.pop("elem", None)
        out.append({kind: body})
    return out


def _addr_range(value: Any) -> tuple[int, int, int] | None:
    """An address, prefix or range element -> (version, first, last), else None."""
    try:
        if isinstance(value, str):
            net = ip_network(value, strict=False)
            return net.version, int(net.network_address), int(net.broadcast_address)
        if isinstance(value, dict) and "prefix" in value:
            net = ip_network(f"{value['prefix']['addr']}/{value['prefix']['len']}", strict=False)
            return net.version, int(net.network_address), int(net.broadcast_address)
        if isinstance(value, dict) and "range" in value:
            low, high = (ip_address(v) for v in value["range"])
            return low.version, int(low), int(high)
    except ValueError:
        return None
    return None


def _value(value: Any) -> Any:
    if isinstance(value, str) and value in DSCP_NAMES:
        return DSCP_NAMES[value]
    return value


def _spell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(_value(value), sort_keys=True)


def element_keys(elements: Iterable[Any], *, interval: bool = False) -> list[str]:
    """Elements in one comparable spelling; in an interval set, address ranges are merged as
    the kernel may merge them. (Plain addresses need no parsing: nft and Python both print
    them in their canonical form, RFC 5952 for IPv6, which keeps 100k-element sets cheap.)"""
    if not interval:
        keys = []
        for raw in elements:
            elem = raw["elem"]["val"] if isinstance(raw, dict) and "elem" in raw else raw
            if isinstance(elem, list):  # map element: [key, value]
                keys.append(f"{_spell(elem[0])}:{_spell(_value(elem[1]))}")
            else:
                keys.append(_spell(elem))
        return sorted(keys)
    ranges: list[tuple[int, int, int]] = []
    others: list[str] = []
    for raw in elements:
        elem = raw["elem"]["val"] if isinstance(raw, dict) and "elem" in raw else raw
        if isinstance(elem, list):  # map element: [key, value]
            key = _addr_range(elem[0])
            spelled = f"{key}" if key else json.dumps(elem[0], sort_keys=True)
            others.append(f"{spelled}:{_value(elem[1])}")
            continue
        span = _addr_range(elem)
        if span is None:
            others.append(json.dumps(_value(elem), sort_keys=True))
        else:
            ranges.append(span)
    merged: list[tuple[int, int, int]] = []
    for version, first, last in sorted(ranges):
        if merged and merged[-1][0] == version and first <= merged[-1][2] + 1:
            merged[-1] = (version, merged[-1][1], max(last, merged[-1][2]))
        else:
            merged.append((version, first, last))
    return sorted(others) + [f"{v}:{a}-{b}" for v, a, b in merged]


def _index(objects: Iterable[JSON]) -> dict[tuple[str, str], JSON]:
    found = {}
    for obj in objects:
        kind = next(iter(obj))
        if kind in ("chain", "set", "map", "counter", "limit", "quota", "ct helper"):
            found[(kind, obj[kind]["name"])] = obj[kind]
    return found


def _rule_counts(objects: Iterable[JSON]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for obj in objects:
        if "rule" in obj:
            chain = obj["rule"]["chain"]
            counts[chain] = counts.get(chain, 0) + 1
    return counts


_CHAIN_KEYS = ("type", "hook", "prio", "policy")
_SET_KEYS = ("type", "map")


def table_mismatches(planned: list[JSON], live: list[JSON] | None) -> list[str]:
    """What differs between the plan's table objects and the kernel's listing ([] if none)."""
    if live is None:
        return ["nftables: table inet netpersona is missing"] if planned else []
    if not planned:
        return ["nftables: table inet netpersona is present but the plan has none"]
    want, have = _index(planned), _index(live)
    problems = []
    for key in sorted(want.keys() - have.keys()):
        problems.append(f"nftables: {key[0]} {key[1]} is missing")
    for key in sorted(have.keys() - want.keys()):
        problems.append(f"nftables: {key[0]} {key[1]} is not in the plan")
    for key in sorted(want.keys() & have.keys()):
        kind, name = key
        planned_body, live_body = want[key], have[key]
        fields = _CHAIN_KEYS if kind == "chain" else _SET_KEYS if kind in ("set", "map") else ()
        for field in fields:
            if planned_body.get(field) != live_body.get(field):
                problems.append(
                    f"nftables: {kind} {name} has {field} {live_body.get(field)!r}, "
                    f"planned {planned_body.get(field)!r}"
                )
        if kind in ("set", "map") and not _is_dynamic(planned_body):
            interval = "interval" in planned_body.get("flags", [])
            expected = element_keys(planned_body.get("elem", []), interval=interval)
            actual = element_keys(live_body.get("elem", []), interval=interval)
            if expected != actual:
                problems.append(
                    f"nftables: {kind} {name} holds {len(actual)} elements that differ from "
                    f"the {len(expected)} planned"
                )
    want_rules, have_rules = _rule_counts(planned), _rule_counts(live)
    for chain in sorted(want_rules.keys() | have_rules.keys()):
        if want_rules.get(chain, 0) != have_rules.get(chain, 0):
            problems.append(
                f"nftables: chain {chain} has {have_rules.get(chain, 0)} rules, "
                f"planned {want_rules.get(chain, 0)}"
            )
    return problems
