"""What the agent owns in the kernel, read back; and the state it wants there.

A :class:`KernelSnapshot` is read before every change (to undo to) and after (to verify). A
:class:`Target` is the owned state a plan asks for; :func:`target_mismatches` lists how the
kernel differs from it, which is the readback check of an apply, the ``--check`` diff and the
drift report alike.

Ownership (spec section 7): the table ``inet netpersona``; root qdiscs with handle ``6e70:``
and their classes; every route of table 7480; rules with preferences in
:data:`OWNED_RULE_PRIORITIES`; and the sysctls and link settings a plan names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from netpersona.compiler.plan import (
    ROUTE_TABLE,
    RULE_PRIORITY,
    TC_HANDLE,
    LinkSetting,
    Plan,
    Route,
    RoutingRule,
    TcClass,
    TcQdisc,
)
from netpersona.dataplane.kernel import Kernel, RootQdisc
from netpersona.dataplane.link_ipv6 import LinkIPv6, ipv6_differences
from netpersona.dataplane.nftview import normalise_listing, table_mismatches
from netpersona.model.jsontree import JSON

__all__ = [
    "OWNED_RULE_PRIORITIES",
    "KernelSnapshot",
    "Target",
    "read_snapshot",
    "reread",
    "show_route",
    "show_rule",
    "target_mismatches",
]

TcItem = TcQdisc | TcClass

OWNED_RULE_PRIORITIES = range(RULE_PRIORITY, RULE_PRIORITY + 100)
# HTB keeps rates as bytes/s and bursts as timer ticks; tc prints them rounded.
RATE_TOLERANCE = 0.005
BURST_TOLERANCE = 0.05


@dataclass(frozen=True, slots=True)
class KernelSnapshot:
    nft: tuple[JSON, ...] | None  # normalised listing, to compare
    roots: tuple[RootQdisc, ...]
    tc: tuple[TcItem, ...]  # owned qdiscs and their classes
    routes: tuple[Route, ...]
    rules: tuple[RoutingRule, ...]
    sysctls: tuple[tuple[str, str], ...]
    links: tuple[LinkSetting, ...]
    nft_raw: tuple[JSON, ...] | None = field(default=None, compare=False)
    # The IPv6 side of the links a plan names: an MTU change can take it away.
    ipv6: tuple[LinkIPv6, ...] = ()

    def tc_on(self, dev: str) -> list[TcItem]:
        return [item for item in self.tc if item.dev == dev]

    def root(self, dev: str) -> RootQdisc | None:
        return next((r for r in self.roots if r.dev == dev), None)

    def ipv6_of(self, ifname: str) -> LinkIPv6 | None:
        return next((link for link in self.ipv6 if link.ifname == ifname), None)

    def differences(self, other: KernelSnapshot) -> list[str]:
        """How ``other`` differs from this snapshot (for verifying a rollback)."""
        out = []
        if self.nft != other.nft:
            out.append("nftables: table inet netpersona differs")
        owned_devs = {i.dev for i in self.tc} | {i.dev for i in other.tc}
        mine = {r.dev: r for r in self.roots if r.dev in owned_devs}
        theirs = {r.dev: r for r in other.roots if r.dev in owned_devs}
        if mine != theirs:
            out.append(f"tc: root qdiscs differ on {', '.join(sorted(owned_devs))}")
        if not _same_tc(self.tc, other.tc):
            out.append("tc: owned classes differ")
        for name in ("routes", "rules", "sysctls", "links"):
            if getattr(self, name) != getattr(other, name):
                out.append(f"{name}: {getattr(self, name)!r} != {getattr(other, name)!r}")
        for link in self.ipv6:
            out += ipv6_differences(link, other.ipv6_of(link.ifname))
        return out


# The parts of a snapshot, each read on its own (PARTS: all of them).
PARTS = frozenset({"nftables", "tc", "routes", "rules", "sysctls", "links"})


def read_snapshot(
    kernel: Kernel, sysctl_keys: Iterable[str] = (), link_names: Iterable[str] = ()
) -> KernelSnapshot:
    return reread(kernel, None, PARTS, sysctl_keys, link_names)


def reread(
    kernel: Kernel,
    before: KernelSnapshot | None,
    parts: Iterable[str],
    sysctl_keys: Iterable[str] = (),
    link_names: Iterable[str] = (),
) -> KernelSnapshot:
    """``before`` with ``parts`` read from the kernel again (every part when it is None).

    After an apply only the parts it changed are read back: a port allowed is one nftables
    transaction, and reading routes, rules, tc and sysctls again would say nothing about it
    (whether something else changed them is the drift check's question, on its timer).
    """
    parts = PARTS if before is None else frozenset(parts)
    found: dict[str, Any] = {}
    if "nftables" in parts:
        listing = kernel.nft_table()
        found["nft"] = tuple(normalise_listing(listing)) if listing is not None else None
        found["nft_raw"] = tuple(listing) if listing is not None else None
    if "tc" in parts:
        roots = tuple(sorted(kernel.root_qdiscs(), key=lambda r: r.dev))
        tc: list[TcItem] = []
        for root in roots:
            if root.handle == TC_HANDLE:
                tc.append(TcQdisc(root.dev, root.handle, "root", "htb", root.default_class or "0"))
                tc += kernel.htb_classes(root.dev)
        found["roots"], found["tc"] = roots, tuple(tc)
    if "routes" in parts:
        found["routes"] = tuple(
            sorted(kernel.routes(4, ROUTE_TABLE) + kernel.routes(6, ROUTE_TABLE))
        )
    if "rules" in parts:
        owned = (
            r for r in kernel.rules(4) + kernel.rules(6) if r.priority in OWNED_RULE_PRIORITIES
        )
        found["rules"] = tuple(sorted(owned))
    if "sysctls" in parts:
        found["sysctls"] = tuple(sorted(kernel.sysctls(sorted(set(sysctl_keys))).items()))
    if "links" in parts:
        names = sorted(set(link_names))
        found["links"] = tuple(kernel.link(name) for name in names)
        found["ipv6"] = tuple(kernel.link_ipv6(name) for name in names)
    if before is None:
        return KernelSnapshot(**found)
    return replace(before, **found)


@dataclass(frozen=True, slots=True)
class Target:
    """The owned kernel state wanted: a plan's, or the originals' on remove."""

    nft: tuple[JSON, ...] | None
    tc: Mapping[str, tuple[TcItem, ...]]
    routes: tuple[Route, ...]
    rules: tuple[RoutingRule, ...]
    sysctls: Mapping[str, str]
    links: Mapping[str, LinkSetting]
    # The IPv6 side of links as the VM had it, put back when their MTU rises to 1280 or more.
    ipv6: Mapping[str, LinkIPv6] = field(default_factory=dict)

    @classmethod
    def from_plan(cls, plan: Plan) -> Target:
        tc: dict[str, list[TcItem]] = {}
        for item in plan.tc:
            tc.setdefault(item.dev, []).append(item)
        return cls(
            nft=tuple(plan.nftables_objects()),
            tc={dev: tuple(items) for dev, items in tc.items()},
            routes=tuple(sorted(plan.routes)),
            rules=tuple(sorted(plan.rules)),
            sysctls={s.key: s.value for s in plan.sysctls},
            links={link.ifname: link for link in plan.links},
        )

    @property
    def sysctl_keys(self) -> list[str]:
        return sorted(self.sysctls)

    @property
    def link_names(self) -> list[str]:
        return sorted(self.links)


def _close(have: int, want: int, tolerance: float) -> bool:
    return abs(have - want) <= max(1.0, want * tolerance)


def _burst_close(have: int, want: TcClass) -> bool:
    # tc turns a burst into whole microseconds at the class rate before the kernel's 64 ns
    # ticks (compiler/qos.py), so a burst is only ever held to one microsecond of the rate.
    assert want.burst is not None
    quantum = want.rate // 8 // 1_000_000 + 1
    return abs(have - want.burst) <= max(quantum, want.burst * BURST_TOLERANCE)


def _tc_class_matches(have: TcClass, want: TcClass, *, leaf: bool) -> bool:
    return (
        have.parent == want.parent
        and _close(have.rate, want.rate, RATE_TOLERANCE)
        and _close(have.ceil, want.ceil, RATE_TOLERANCE)
        and (want.burst is None or have.burst is None or _burst_close(have.burst, want))
        # tc prints prio only for leaf classes; it means nothing on inner ones.
        and (not leaf or have.prio == want.prio)
    )


def _same_tc(a: Sequence[TcItem], b: Sequence[TcItem]) -> bool:
    return not tc_mismatches(a, b) and not tc_mismatches(b, a)


def tc_mismatches(want: Sequence[TcItem], have: Sequence[TcItem]) -> list[str]:
    problems = []
    parents = {item.parent for item in want if isinstance(item, TcClass)}
    have_classes = {(c.dev, c.classid): c for c in have if isinstance(c, TcClass)}
    have_qdiscs = {(q.dev, q.handle): q for q in have if isinstance(q, TcQdisc)}
    for item in want:
        if isinstance(item, TcQdisc):
            live = have_qdiscs.get((item.dev, item.handle))
            if live is None:
                problems.append(f"tc: qdisc {item.handle} on {item.dev} is missing")
            elif live.default_class.lstrip("0") != item.default_class.lstrip("0"):
                problems.append(
                    f"tc: qdisc {item.handle} on {item.dev} has default class "
                    f"{live.default_class}, planned {item.default_class}"
                )
        else:
            cls = have_classes.get((item.dev, item.classid))
            if cls is None:
                problems.append(f"tc: class {item.classid} on {item.dev} is missing")
            elif not _tc_class_matches(cls, item, leaf=item.classid not in parents):
                problems.append(f"tc: class {item.classid} on {item.dev} is {cls}, planned {item}")
    wanted = {(i.dev, i.classid) for i in want if isinstance(i, TcClass)}
    for key in sorted(have_classes.keys() - wanted):
        problems.append(f"tc: class {key[1]} on {key[0]} is not planned")
    return problems


def target_mismatches(target: Target, live: KernelSnapshot) -> list[str]:
    """How the kernel differs from ``target`` in everything the agent owns."""
    problems = table_mismatches(list(target.nft or ()), list(live.nft_raw or ()) or None)
    want_tc = [item for items in target.tc.values() for item in items]
    problems += tc_mismatches(want_tc, live.tc)
    for dev in sorted({i.dev for i in live.tc} - set(target.tc)):
        problems.append(f"tc: qdisc {TC_HANDLE} on {dev} is not planned")
    problems += _set_mismatches("route", target.routes, live.routes, show_route)
    problems += _set_mismatches("rule", target.rules, live.rules, show_rule)
    values = dict(live.sysctls)
    for key, value in sorted(target.sysctls.items()):
        if values.get(key) != value:
            problems.append(f"sysctl: {key} is {values.get(key)!r}, planned {value!r}")
    return problems + _link_mismatches(target, live)


def _set_mismatches(
    what: str, want: Iterable[Any], have: Iterable[Any], show: Callable[[Any], str]
) -> list[str]:
    missing = [f"{what}: {show(x)} is missing" for x in sorted(set(want) - set(have))]
    return missing + [f"{what}: {show(x)} is not planned" for x in sorted(set(have) - set(want))]


def _link_mismatches(target: Target, live: KernelSnapshot) -> list[str]:
    problems = []
    links = {link.ifname: link for link in live.links}
    for name, want in sorted(target.links.items()):
        have = links.get(name)
        if have is None:
            problems.append(f"link: {name} is missing")
            continue
        if want.mtu is not None and have.mtu != want.mtu:
            problems.append(f"link: {name} has mtu {have.mtu}, planned {want.mtu}")
        if want.multicast is not None and have.multicast != want.multicast:
            problems.append(
                f"link: {name} has multicast {_onoff(have.multicast)}, "
                f"planned {_onoff(want.multicast)}"
            )
    return problems


def _onoff(flag: bool | None) -> str:
    return "on" if flag else "off"


def show_route(route: Route) -> str:
    text = f"{'' if route.kind == 'unicast' else route.kind + ' '}{route.dst} dev {route.dev}"
    if route.gateway:
        text += f" via {route.gateway}"
    return f"{text} table {route.table}"


def show_rule(rule: RoutingRule) -> str:
    text = f"ipv{rule.family} pref {rule.priority}"
    if rule.dst:
        text += f" to {rule.dst}"
    text += f" lookup {rule.table}"
    if rule.suppress_prefixlength is not None:
        text += f" suppress_prefixlength {rule.suppress_prefixlength}"
    return text
