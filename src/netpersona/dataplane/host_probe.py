"""Host facts read from the live system (``netpersona apply --facts auto``).

Uplinks are the links that carry a default route in the main table; on a host without one
(an isolated lab), every link that is up and has a global address. Addresses and gateways come
from the kernel, over rtnetlink in one session (:meth:`Kernel.host_view`). What the kernel
cannot know is given by the caller, with documented defaults: the metadata endpoint
(169.254.169.254:80), the control channel port (UDP 7480), and the tier of each uplink (from
instance metadata). The peer view starts empty: peers arrive later over the control channel
and update the peer sets in place.
"""

from __future__ import annotations

from collections.abc import Mapping

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
    view = kernel.host_view()
    with_default = set(view.gateways4) | set(view.gateways6)
    uplinks = []
    for link in view.links:
        if link.name == "lo" or link.loopback:
            continue
        chosen = link.name in with_default if with_default else bool(link.addresses) and link.up
        if not chosen:
            continue
        gw4 = view.gateways4.get(link.name)
        uplinks.append(
            Uplink(
                name=link.name,
                addresses=link.addresses,
                gateway4=gw4 if gw4 and int(gw4) else None,
                gateway6=view.gateways6.get(link.name),
                tier=tiers.get(link.name),
            )
        )
    return HostFacts(
        uplinks=tuple(sorted(uplinks, key=lambda u: u.name)),
        metadata=metadata,
        control_port=control_port,
    )
