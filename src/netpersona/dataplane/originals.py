"""What the VM had before the agent changed it, and the owned state a plan or a remove wants.

:class:`~netpersona.dataplane.state.Originals` is recorded field by field, the first time a
plan touches each thing, before the change. A plan's target adds the originals of whatever
an earlier plan changed and this one leaves alone, so those go back to what the VM had;
``remove`` wants the originals alone.
"""

from __future__ import annotations

from dataclasses import replace

from netpersona.compiler.plan import TC_HANDLE, LinkSetting, Plan, Route, RoutingRule
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
    return replace(target, sysctls=sysctls, links=links, ipv6=dict(originals.ipv6))


def originals_target(originals: Originals) -> Target:
    """What ``remove`` converges to: everything as the VM had it."""
    return Target(
        nft=None,
        tc={},
        routes=originals.routes,
        rules=originals.rules,
        sysctls=dict(originals.sysctls),
        links=_original_links(originals),
        ipv6=dict(originals.ipv6),
    )


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
    sysctls = dict(originals.sysctls)
    for key, value in before.sysctls:
        sysctls.setdefault(key, value)
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
    qdiscs = dict(originals.qdiscs)
    for dev in target.tc:
        root = before.root(dev)
        if root is not None and root.handle != TC_HANDLE:
            qdiscs.setdefault(dev, root.kind)
    routes: tuple[Route, ...] = before.routes if first else originals.routes
    rules: tuple[RoutingRule, ...] = before.rules if first else originals.rules
    return Originals(sysctls, mtu, multicast, routes, rules, qdiscs, ipv6)
