"""What the spec says a probe between two lab VMs must do, computed from their personas alone.

This is the lab's oracle: the reachability engine (:mod:`netpersona.reachability`), which reads
spec sections 3-5 and nothing of the compiler, so a disagreement between it and real packets is
a finding, not a tautology. A lab VM is an :class:`~netpersona.reachability.Endpoint`; each
probe kind is one kind of traffic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import ip_address

from netpersona.model.protocols import L4, PortRange
from netpersona.reachability import Endpoint, Traffic, Verdict, Via, can_reach

__all__ = ["Host", "Probe", "ProbeKind", "expected", "explain", "tcp_allowed_port", "udp_port"]

Host = Endpoint  # a lab VM as the spec sees it


class ProbeKind(StrEnum):
    TCP_ALLOWED = "tcp-allowed"
    TCP_DENIED = "tcp-denied"
    UDP = "udp"
    ICMP = "icmp"
    BROADCAST = "broadcast"
    MULTICAST_LISTED = "mcast-listed"
    MULTICAST_UNLISTED = "mcast-unlisted"


@dataclass(frozen=True, slots=True)
class Probe:
    kind: ProbeKind
    l4: L4
    port: int | None = None  # destination port (TCP/UDP)
    group: str | None = None  # multicast group

    def traffic(self) -> Traffic:
        ports = None if self.port is None else PortRange(self.port, self.port)
        if self.kind is ProbeKind.BROADCAST:
            return Traffic(self.l4, ports, Via.BROADCAST)
        if self.kind in (ProbeKind.MULTICAST_LISTED, ProbeKind.MULTICAST_UNLISTED):
            assert self.group is not None
            return Traffic(self.l4, ports, Via.MULTICAST, ip_address(self.group))
        return Traffic(self.l4, ports)


def explain(src: Host, dst: Host, probe: Probe) -> Verdict:
    """The engine's verdict for ``probe``, with the checks that decided it."""
    return can_reach(src, dst, probe.traffic())


def expected(src: Host, dst: Host, probe: Probe) -> bool:
    """Whether ``probe`` from ``src`` must reach ``dst`` (and, for TCP/ICMP, be answered)."""
    return explain(src, dst, probe).reachable


def tcp_allowed_port(host: Host) -> int | None:
    """A TCP port the host's persona lets in (the first one listed), for the allowed-port probe."""
    if host.persona is None:
        return None
    for rule in host.persona.rules:
        if rule.l4 is L4.TCP:
            return rule.ports.first if rule.ports is not None else 80
    return None


def udp_port(hosts: Sequence[Host]) -> int:
    """One UDP port every probe uses: the first UDP port any persona in the lab lists."""
    for host in hosts:
        if host.persona is not None:
            for rule in host.persona.rules:
                if rule.l4 is L4.UDP and rule.ports is not None:
                    return rule.ports.first
    return 9
