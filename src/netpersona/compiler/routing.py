"""Routing (spec sections 5 and 6): tier steering with two uplinks, and the multicast route.

Everything lives in the agent's own table (:data:`ROUTE_TABLE`) and rules from
:data:`RULE_PRIORITY` up; routes the VM already had are never edited.

Steering uses the pattern of wg-quick(8): first ``lookup main suppress_prefixlength 0`` so every
specific route of the main table (on-link subnets, anything the operator added) still wins, then
the agent's table, whose default route leaves through the uplink of the wanted tier.
"""

from __future__ import annotations

from typing import Literal

from netpersona.compiler.plan import MAIN_TABLE, ROUTE_TABLE, RULE_PRIORITY, Route, RoutingRule
from netpersona.facts import HostFacts, Tier, Uplink
from netpersona.model.persona import CommunicationMode, Persona

__all__ = ["PREMIUM_PRIORITY", "compile_routing", "steering_uplink"]

# Spec section 6: priority >= 5 goes premium.
PREMIUM_PRIORITY = 5


def steering_uplink(persona: Persona, facts: HostFacts) -> Uplink | None:
    """The uplink that carries this VM's traffic when tiers decide, else None.

    With fewer than two uplinks, or no uplink of either tier, the main table decides. When the
    wanted tier is missing, the other tier is used rather than none, so the VM keeps a path.
    """
    tagged = sorted((u for u in facts.uplinks if u.tier is not None), key=lambda u: u.name)
    if len(facts.uplinks) < 2 or not tagged:
        return None
    wanted = Tier.PREMIUM if persona.priority >= PREMIUM_PRIORITY else Tier.STANDARD
    return next((u for u in tagged if u.tier is wanted), tagged[0])


def compile_routing(
    persona: Persona, facts: HostFacts
) -> tuple[tuple[Route, ...], tuple[RoutingRule, ...]]:
    steer = steering_uplink(persona, facts)
    routes, rules = _multicast_routing(persona, facts, steer)
    if steer is not None:
        defaults = _steering_defaults(steer)
        routes += defaults
        for version in sorted({r.family for r in defaults}):
            rules += [
                RoutingRule(
                    family=version,
                    priority=RULE_PRIORITY + 1,
                    table=MAIN_TABLE,
                    suppress_prefixlength=0,
                ),
                RoutingRule(family=version, priority=RULE_PRIORITY + 2, table=ROUTE_TABLE),
            ]
    return tuple(sorted(routes)), tuple(sorted(rules))


def _multicast_routing(
    persona: Persona, facts: HostFacts, steer: Uplink | None
) -> tuple[list[Route], list[RoutingRule]]:
    """Spec section 5: the groups' ranges via the multicast uplink, in the agent's table."""
    if persona.communication_mode is not CommunicationMode.MULTICAST or not facts.uplinks:
        return [], []
    uplink = steer or sorted(facts.uplinks, key=lambda u: u.name)[0]
    routes, rules = [], []
    for version in sorted({g.version for g in persona.multicast_groups}):
        dst = "224.0.0.0/4" if version == 4 else "ff00::/8"
        kind: Literal["unicast", "multicast"] = "multicast" if version == 6 else "unicast"
        routes.append(Route(version, ROUTE_TABLE, dst, uplink.name, kind=kind))
        rules.append(
            RoutingRule(family=version, priority=RULE_PRIORITY, table=ROUTE_TABLE, dst=dst)
        )
    return routes, rules


def _steering_defaults(steer: Uplink) -> list[Route]:
    """The default route of each family the steering uplink has an address (and, for IPv6,
    a gateway) for, leaving through it with its address as source."""
    v4 = next((a for a in steer.addresses if a.version == 4), None)
    v6 = next((a for a in steer.addresses if a.version == 6 and not a.ip.is_link_local), None)
    routes = []
    family: Literal[4, 6]
    for family, address, gateway, needs_gateway in (
        (4, v4, steer.gateway4, False),
        (6, v6, steer.gateway6, True),
    ):
        if address is None or (needs_gateway and gateway is None):
            continue
        routes.append(
            Route(
                family=family,
                table=ROUTE_TABLE,
                dst="default",
                dev=steer.name,
                gateway=str(gateway) if gateway else None,
                src=str(address.ip),
            )
        )
    return routes
