"""What the VM had before the agent changed it, and the owned state a plan or a remove wants.

:class:`~netpersona.dataplane.state.Originals` is recorded field by field, the first time a
plan touches each thing, before the change. A plan's target adds the originals of whatever
an earlier plan changed and this one leaves alone, so those go back to what the VM had;
``remove`` wants the originals alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from netpersona.compiler.plan import TC_HANDLE, LinkSetting, Plan, Route, RoutingRule
from netpersona.dataplane.link_ipv6 import IPV6_MIN_MTU, LinkIPv6, ipv6_settings_prefix
from netpersona.dataplane.snapshot import KernelSnapshot, Target
from netpersona.dataplane.state import Originals

__all__ = ["originals_target", "plan_target", "record_originals"]


def plan_target(plan: Plan, originals: Originals) -> Target:
    """The plan's owned state, plus the originals of whatever an earlier plan changed and this
    one leaves alone (so those go back to what the VM had)."""
    target = Target.from_plan(plan)
    sysctls = {**originals.sysctls, **target.sysctls}
    links = dict(_original_links(originals))
    for name, setting in target.links.items():
        old = links.get(name, LinkSetting(name))
        links[name] = LinkSetting(
            name,
            mtu=setting.mtu if setting.mtu is not None else old.mtu,
            multicast=setting.multicast if setting.multicast is not None else old.multicast,
        )
    return replace(
        target,
        sysctls=_without_vanished_ipv6(sysctls, links),
        links=links,
        ipv6=dict(originals.ipv6),
    )


def originals_target(originals: Originals) -> Target:
    """What ``remove`` converges to: everything as the VM had it."""
    links = _original_links(originals)
    return Target(
        nft=None,
        tc={},
        routes=originals.routes,
        rules=originals.rules,
        sysctls=_without_vanished_ipv6(originals.sysctls, links),
        links=links,
        ipv6=dict(originals.ipv6),
    )


def _without_vanished_ipv6(
    sysctls: Mapping[str, str], links: Mapping[str, LinkSetting]
) -> dict[str, str]:
    """A link below 1280 has no IPv6 settings to set or put back: the kernel removes them with
    IPv6, and the link's IPv6 state returns with the MTU (restored from the originals)."""
    gone = tuple(
        ipv6_settings_prefix(name)
        for name, link in links.items()
        if link.mtu is not None and link.mtu < IPV6_MIN_MTU
    )
    return {key: value for key, value in sysctls.items() if not key.startswith(gone)}


def _original_links(originals: Originals) -> dict[str, LinkSetting]:
    names = set(originals.mtu) | set(originals.multicast)
    return {
        name: LinkSetting(
            name, mtu=originals.mtu.get(name), multicast=originals.multicast.get(name)
        )
        for name in sorted(names)
    }


def record_originals(
    originals: Originals, target: Target, before: KernelSnapshot, *, first: bool
) -> Originals:
    """``originals`` plus the live value of everything ``target`` touches for the first time."""
    mtu, multicast, ipv6 = _record_links(originals, target, before)
    sysctls = dict(originals.sysctls)
    for key, value in before.sysctls:
        sysctls.setdefault(key, value)
    # A link's IPv6 setting that is missing now (its MTU is below 1280) had the value kept
    # with the link's IPv6 state.
    for saved in ipv6.values():
        for key, value in saved.settings:
            if key in target.sysctls:
                sysctls.setdefault(key, value)
    qdiscs = dict(originals.qdiscs)
    for dev in target.tc:
        root = before.root(dev)
        if root is not None and root.handle != TC_HANDLE:
            qdiscs.setdefault(dev, root.kind)
    routes: tuple[Route, ...] = before.routes if first else originals.routes
    rules: tuple[RoutingRule, ...] = before.rules if first else originals.rules
    return Originals(sysctls, mtu, multicast, routes, rules, qdiscs, ipv6)


def _record_links(
    originals: Originals, target: Target, before: KernelSnapshot
) -> tuple[dict[str, int], dict[str, bool], dict[str, LinkIPv6]]:
    mtu, multicast, ipv6 = dict(originals.mtu), dict(originals.multicast), dict(originals.ipv6)
    for link in before.links:
        want = target.links.get(link.ifname)
        if want is None:
            continue
        if want.mtu is not None and link.mtu is not None:
            mtu.setdefault(link.ifname, link.mtu)
            # A low MTU takes IPv6 off the link; what it was is put back when the MTU rises.
            live_ipv6 = before.ipv6_of(link.ifname)
            if live_ipv6 is not None:
                ipv6.setdefault(link.ifname, live_ipv6)
        if want.multicast is not None and link.multicast is not None:
            multicast.setdefault(link.ifname, link.multicast)
    return mtu, multicast, ipv6
