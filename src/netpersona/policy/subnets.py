"""Which of a policy's subnets hold an instance's addresses, found without a scan.

IPv4 subnets on octet boundaries (most are) are looked up by the address's leading octets as
written; the others by the address's integer value shifted to each prefix length in use. The
fleet's addresses were validated where they entered (inventory, API), so dotted quads are
converted by arithmetic: ``ipaddress``'s parser costs more than the rest of a signature.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from netpersona.records import Instance

__all__ = ["Network", "SubnetIndex"]

Network = IPv4Network | IPv6Network


def _address_int(text: str) -> tuple[int, int]:
    """(version, integer) of an address already validated where it entered."""
    parts = text.split(".")
    if len(parts) == 4 and parts[0].isdigit():
        a, b, c, d = parts
        return 4, (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)
    address: IPv4Address | IPv6Address = ip_address(text)
    return address.version, int(address)


class SubnetIndex:
    def __init__(self, subnets: Iterable[Network]) -> None:
        octets: dict[int, dict[str, Network]] = {}
        rest: dict[tuple[int, int], dict[int, Network]] = {}
        for net in set(subnets):
            if net.version == 4 and net.prefixlen % 8 == 0 and net.prefixlen:
                count = net.prefixlen // 8
                leading = ".".join(str(net.network_address).split(".")[:count])
                octets.setdefault(count, {})[leading] = net
            else:
                by_start = rest.setdefault((net.version, net.prefixlen), {})
                by_start[int(net.network_address)] = net
        self._octets = tuple(octets.items())
        self._rest = tuple(rest.items())

    def holding(self, instance: Instance) -> frozenset[Network]:
        """The subnets holding one of the instance's addresses (its own or its interfaces')."""
        found: set[Network] = set()
        for text in instance.addresses:
            self._add(text.split("/")[0], found)
        for interface in instance.interfaces:
            for text in interface.addresses:
                self._add(text.split("/")[0], found)
        return frozenset(found)

    def _add(self, text: str, found: set[Network]) -> None:
        parts = text.split(".")
        if len(parts) == 4 and parts[0].isdigit():
            for count, by_octets in self._octets:
                net = by_octets.get(".".join(parts[:count]))
                if net is not None:
                    found.add(net)
            if not self._rest:
                return
        version, value = _address_int(text)
        for (net_version, prefix), by_start in self._rest:
            if net_version == version:
                shift = (32 if version == 4 else 128) - prefix
                net = by_start.get(value >> shift << shift)
                if net is not None:
                    found.add(net)
