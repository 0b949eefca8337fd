"""Host facts read from the live system (``netpersona apply --facts auto``).

Uplinks are the links that carry a default route in the main table; on a host without one
(an isolated lab), every link that is up and has a global address. Addresses and gateways come
from the kernel. What the kernel cannot know is given by the caller, with documented defaults:
the metadata endpoint (169.254.169.254:80), the control channel port (UDP 7480), and the tier
of each uplink (from instance metadata). The peer view starts empty: peers arrive later over
the control channel and update the peer sets in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv6Address, ip_interface

from netpersona.dataplane.kernel import Kernel
from netpersona.facts import (
    DEFAULT_CONTROL_PORT,
    DEFAULT_METADATA,
    Endpoint,
    HostFacts,
    Tier,
    Uplink,
)

__all__ = ["gather_facts"]


def gather_facts(
    kernel: Kernel,
    *,
    metadata: Endpoint = DEFAULT_METADATA,
    control_port: int = DEFAULT_CONTROL_PORT,
    tiers: Mapping[str, Tier] | None = None,
) -> HostFacts:
    tiers = dict(tiers or {})
    gateway4: dict[str, IPv4Address] = {}
    gateway6: dict[str, IPv6Address] = {}
    for route in kernel.default_routes(4):
        if "dev" in route and route.get("gateway"):
            gateway4.setdefault(route["dev"], IPv4Address(route["gateway"]))
        elif "dev" in route:
            gateway4.setdefault(route["dev"], IPv4Address(0))
    for route in kernel.default_routes(6):
        if "dev" in route and route.get("gateway"):
            gateway6.setdefault(route["dev"], IPv6Address(route["gateway"]))
    links = kernel.addresses()
    with_default = set(gateway4) | set(gateway6)
    uplinks = []
    for link in links:
        name = link["ifname"]
        if name == "lo" or "LOOPBACK" in link.get("flags", []):
            continue
        addresses = tuple(
            ip_interface(f"{a['local']}/{a['prefixlen']}")
            for a in link.get("addr_info", [])
            if a.get("scope") == "global"
        )
        chosen = (
            name in with_default
            if with_default
            else bool(addresses) and "UP" in link.get("flags", [])
        )
        if not chosen:
            continue
        gw4 = gateway4.get(name)
        uplinks.append(
            Uplink(
                name=name,
                addresses=addresses,
                gateway4=gw4 if gw4 and int(gw4) else None,
                gateway6=gateway6.get(name),
                tier=tiers.get(name),
            )
        )
    return HostFacts(
        uplinks=tuple(sorted(uplinks, key=lambda u: u.name)),
        metadata=metadata,
        control_port=control_port,
    )
