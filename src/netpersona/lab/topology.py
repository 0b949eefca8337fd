"""A hypervisor and its VMs, as network namespaces joined by a bridge.

    hypervisor netns:  bridge br0 with the gateway address and the metadata address
                       (169.254.169.254/32, answered by ARP on the bridge, as a cloud host does;
                       with replicas, one more address each: 169.254.169.253, .252, ...)
    one netns per VM:  eth0, a veth whose other end is a port of br0; an on-link route to each
                       metadata address

Every namespace is named ``<prefix>-<name>``; :meth:`Topology.destroy` (and the context manager)
deletes the ones it made with their links and processes, and nothing else. Given a
:class:`~netpersona.lab.ledger.Ledger`, every namespace and link is written down as it is made,
so what a crashed run left behind can be removed later. The host's own namespace is never
changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, ip_interface

from netpersona.facts import DEFAULT_METADATA_ADDRESS
from netpersona.lab.ledger import Ledger
from netpersona.system.command import run
from netpersona.system.netns import Netns, delete_netns

__all__ = ["METADATA_ADDRESS", "Topology", "VmPort", "replica_address", "topology"]

METADATA_ADDRESS = str(DEFAULT_METADATA_ADDRESS)


def replica_address(n: int) -> str:
    """The address of replica ``n`` (0: the metadata address, then the ones just below it)."""
    return str(DEFAULT_METADATA_ADDRESS - n)


@dataclass(frozen=True, slots=True)
class VmPort:
    vm: str
    ifname: str
    address: IPv4Interface


@dataclass
class Topology:
    prefix: str
    gateway: IPv4Interface = field(default_factory=lambda: IPv4Interface("10.77.0.1/24"))
    hypervisor: Netns | None = None
    vms: dict[str, Netns] = field(default_factory=dict)
    ports: list[VmPort] = field(default_factory=list)
    ledger: Ledger | None = None
    replicas: int = 1  # metadata service replicas: one address each on br0, routed from VMs

    @property
    def metadata_addresses(self) -> list[str]:
        return [replica_address(n) for n in range(self.replicas)]

    def ns_name(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def _create_netns(self, name: str) -> Netns:
        if self.ledger is not None:
            self.ledger.create_netns(name)
        else:
            run(["ip", "netns", "add", name])
        return Netns(name)

    def create_hypervisor(self, extra: Mapping[str, IPv4Interface] | None = None) -> Netns:
        """The hypervisor: ``br0`` at :attr:`gateway` with the metadata address, and any
        ``extra`` bridges (name -> the hypervisor's address on it)."""
        hv = self._create_netns(self.ns_name("hv"))
        self.hypervisor = hv
        hv.run(["ip", "link", "set", "lo", "up"])
        for bridge, gateway in {"br0": self.gateway, **(extra or {})}.items():
            hv.run(["ip", "link", "add", bridge, "type", "bridge"])
            hv.run(["ip", "addr", "add", str(gateway), "dev", bridge])
            hv.run(["ip", "link", "set", bridge, "up"])
        for address in self.metadata_addresses:
            hv.run(["ip", "addr", "add", f"{address}/32", "dev", "br0"])
        return hv

    def add_vm(self, name: str, address: str, ifname: str = "eth0", bridge: str = "br0") -> Netns:
        """A VM namespace with ``ifname`` on ``bridge`` at ``address`` (CIDR)."""
        assert self.hypervisor is not None, "create_hypervisor() first"
        hv = self.hypervisor
        vm = self.vms.get(name)
        if vm is None:
            vm = self._create_netns(self.ns_name(name))
            self.vms[name] = vm
            vm.run(["ip", "link", "set", "lo", "up"])
        port = f"p{len(self.ports)}"
        veth = hv.argv(
            ["ip", "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", vm.name]
        )
        if self.ledger is not None:
            self.ledger.create_link(hv.name, port, veth)
        else:
            run(veth)
        hv.run(["ip", "link", "set", port, "master", bridge, "up"])
        iface = ip_interface(address)
        assert isinstance(iface, IPv4Interface)
        vm.run(["ip", "addr", "add", str(iface), "dev", ifname])
        vm.run(["ip", "link", "set", ifname, "up"])
        if bridge == "br0" and not any(p.vm == name for p in self.ports):
            for metadata in self.metadata_addresses:
                vm.run(["ip", "route", "add", f"{metadata}/32", "dev", ifname])
        self.ports.append(VmPort(name, ifname, iface))
        return vm

    def address(self, vm: str) -> str:
        return str(next(p.address.ip for p in self.ports if p.vm == vm))

    def destroy(self) -> list[str]:
        """Delete the namespaces made here; return any that could not be removed."""
        left: list[str] = []
        if self.ledger is not None:
            left = self.ledger.undo().left
        else:
            for vm in list(self.vms.values()):
                delete_netns(vm.name)
            if self.hypervisor is not None:
                delete_netns(self.hypervisor.name)
        self.vms.clear()
        self.hypervisor = None
        return left


@contextlib.contextmanager
def topology(
    prefix: str, gateway: str = "10.77.0.1/24", extra: Mapping[str, IPv4Interface] | None = None
) -> Iterator[Topology]:
    topo = Topology(prefix, IPv4Interface(gateway))
    try:
        topo.create_hypervisor(extra)
        yield topo
    finally:
        topo.destroy()
