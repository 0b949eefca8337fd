"""What iproute2 and tc print, read into the plan's records: routes and rules (``ip -j``),
HTB classes and tc's rates and sizes, sysctl values. Pure parsing; :class:`~netpersona.
dataplane.kernel.LinuxKernel` runs the commands."""

from __future__ import annotations

import re
from collections.abc import Iterable
from ipaddress import ip_network
from typing import Literal

from netpersona.compiler.plan import MAIN_TABLE, Route, RoutingRule, TcClass
from netpersona.errors import KernelError
from netpersona.model.jsontree import JSON

__all__ = [
    "Family",
    "parse_htb_classes",
    "parse_route",
    "parse_rule",
    "parse_tc_rate",
    "parse_tc_size",
    "sysctl_value",
]

Family = Literal[4, 6]

_TABLE_NAMES = {"main": MAIN_TABLE, "local": 255, "default": 253, "unspec": 0}


def sysctl_value(line: str) -> str:
    # Multi-value sysctls are tab-separated; compare them with single spaces.
    return " ".join(line.split())


def _prefix(dst: str, family: Family) -> str:
    if dst == "default":
        return dst
    net = ip_network(dst, strict=False)
    if net.prefixlen == 0:
        return "default"
    return str(net)


def parse_route(family: Family, table: int, raw: JSON) -> Route:
    kind = raw.get("type", "unicast")
    return Route(
        family=family,
        table=table,
        dst=_prefix(raw["dst"], family),
        dev=raw.get("dev", ""),
        gateway=raw.get("gateway"),
        src=raw.get("prefsrc"),
        kind=kind if kind in ("unicast", "multicast") else "unicast",
    )


def _table_id(name: object) -> int:
    text = str(name)
    return _TABLE_NAMES[text] if text in _TABLE_NAMES else int(text)


def parse_rule(family: Family, raw: JSON) -> RoutingRule:
    dst = None
    if raw.get("dst") and raw["dst"] != "all":
        dst = str(ip_network(f"{raw['dst']}/{raw.get('dstlen', 32 if family == 4 else 128)}"))
    return RoutingRule(
        family=family,
        priority=int(raw.get("priority", 0)),
        table=_table_id(raw.get("table", "main")),
        dst=dst,
        suppress_prefixlength=raw.get("suppress_prefixlen"),
    )


# tc(8) prints rates with SI prefixes on bits and sizes with binary prefixes on bytes.
_RATE_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9, "tbit": 10**12}
_SIZE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}
_NUMBER = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")


def parse_tc_rate(text: str) -> int:
    """``10Mbit`` -> 10000000 (bits per second), as tc(8) prints rates (persona documents
    are read by :func:`netpersona.model.units.parse_rate`)."""
    match = _NUMBER.match(text)
    if not match or match.group(2).lower() not in _RATE_UNITS:
        raise KernelError(f"tc printed a rate {text!r} that is not understood")
    return round(float(match.group(1)) * _RATE_UNITS[match.group(2).lower()])


def parse_tc_size(text: str) -> int:
    """``64Kb`` -> 65536 (bytes), as tc(8) prints sizes (``/cell`` details are ignored)."""
    match = _NUMBER.match(text.split("/", maxsplit=1)[0])
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise KernelError(f"tc printed a size {text!r} that is not understood")
    return round(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def parse_htb_classes(dev: str, text: str) -> list[TcClass]:
    """The HTB classes in ``tc class show dev DEV`` output."""
    classes = []
    for line in text.splitlines():
        words = line.split()
        if words[:2] != ["class", "htb"]:
            continue
        fields = dict(_pairs(words[3:]))
        parent = fields.get("parent")
        if parent is None:
            # A class under the qdisc itself is printed as "root"; its parent is the qdisc.
            parent = words[2].split(":")[0] + ":"
        classes.append(
            TcClass(
                dev=dev,
                classid=words[2],
                parent=parent,
                rate=parse_tc_rate(fields["rate"]),
                ceil=parse_tc_rate(fields["ceil"]),
                burst=parse_tc_size(fields["burst"]),
                prio=int(fields.get("prio", "0")),
            )
        )
    return classes


def _pairs(words: Iterable[str]) -> Iterable[tuple[str, str]]:
    items = iter(words)
    for word in items:
        if word == "root":
            continue
        value = next(items, None)
        if value is not None:
            yield word, value
