"""A small lab in throwaway namespaces: one VM, a peer and a stranger on a LAN, and a second
uplink from the VM straight to the peer.

    vm  eth0 10.77.0.1/24 fd77::1/64 --+-- br0 (in ns "lan") --+-- peer     eth0 10.77.0.2 fd77::2
                                       |                       +-- stranger eth0 10.77.0.3 fd77::3
    vm  eth1 10.78.0.1/24 ---------------------------------------- peer     eth1 10.78.0.2

The VM's main table has a default route via the standard uplink (eth1, 10.78.0.2), so steering
to the premium uplink (eth0, gateway 10.77.0.2) is visible. Every namespace goes away on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from netpersona.facts import HostFacts, Tier, parse_facts
from netpersona.system.netns import Netns
from netpersona.testing.netns import netns_group

__all__ = ["Lab", "lab"]

VM4, PEER4, STRANGER4 = "10.77.0.1", "10.77.0.2", "10.77.0.3"
VM6, PEER6, STRANGER6 = "fd77::1", "fd77::2", "fd77::3"
VM4_B, PEER4_B = "10.78.0.1", "10.78.0.2"
BROADCAST4 = "10.77.0.255"


@dataclass(frozen=True, slots=True)
class Lab:
    vm: Netns
    peer: Netns
    stranger: Netns
    lan: Netns

    vm4: str = VM4
    vm6: str = VM6
    peer4: str = PEER4
    peer6: str = PEER6
    stranger4: str = STRANGER4
    stranger6: str = STRANGER6
    broadcast4: str = BROADCAST4

    def facts(
        self,
        *,
        two_uplinks: bool = False,
        peers: list[dict[str, object]] | None = None,
        metadata: str | None = None,
        control_port: int | None = None,
    ) -> HostFacts:
        uplinks: list[dict[str, object]] = [
            {
                "name": "eth0",
                "addresses": [f"{VM4}/24", f"{VM6}/64"],
                "gateway4": PEER4,
                **({"tier": Tier.PREMIUM.value} if two_uplinks else {}),
            }
        ]
        if two_uplinks:
            uplinks.append(
                {
                    "name": "eth1",
                    "addresses": [f"{VM4_B}/24"],
                    "gateway4": PEER4_B,
                    "tier": Tier.STANDARD.value,
                }
            )
        doc: dict[str, object] = {"uplinks": uplinks, "peers": peers or []}
        if metadata:
            doc["metadata"] = metadata
        if control_port:
            doc["control_port"] = control_port
        return parse_facts(doc)


def _veth(a: Netns, a_name: str, b: Netns, b_name: str) -> None:
    # Create both ends in `a`, then move one: the host namespace never sees either end. The
    # moved end gets its name in `b`, where it cannot clash with a name already used in `a`.
    a.run(["ip", "link", "add", "name", a_name, "type", "veth", "peer", "name", "np-moving"])
    a.run(["ip", "link", "set", "np-moving", "netns", b.name])
    b.run(["ip", "link", "set", "np-moving", "name", b_name])
    a.run(["ip", "link", "set", a_name, "up"])
    b.run(["ip", "link", "set", b_name, "up"])


def _address(ns: Netns, dev: str, *addresses: str) -> None:
    for address in addresses:
        flags = ["nodad"] if ":" in address else []
        ns.run(["ip", "address", "add", address, "dev", dev, *flags])


@contextlib.contextmanager
def lab(prefix: str = "nptest") -> Iterator[Lab]:
    with netns_group(4, prefix) as (vm, peer, stranger, lan):
        lan.run(["ip", "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"])
        lan.run(["ip", "link", "set", "br0", "up"])
        for ns, port in ((vm, "l-vm"), (peer, "l-peer"), (stranger, "l-str")):
            _veth(lan, port, ns, "eth0")
            lan.run(["ip", "link", "set", port, "master", "br0"])
        _address(vm, "eth0", f"{VM4}/24", f"{VM6}/64")
        _address(peer, "eth0", f"{PEER4}/24", f"{PEER6}/64")
        _address(stranger, "eth0", f"{STRANGER4}/24", f"{STRANGER6}/64")
        _veth(vm, "eth1", peer, "eth1")
        _address(vm, "eth1", f"{VM4_B}/24")
        _address(peer, "eth1", f"{PEER4_B}/24")
        vm.run(["ip", "route", "add", "default", "via", PEER4_B, "dev", "eth1"])
        for ns in (peer, stranger):
            ns.run(["ip", "route", "add", "default", "dev", "eth0"])
        yield Lab(vm=vm, peer=peer, stranger=stranger, lan=lan)
