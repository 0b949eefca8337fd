"""The probe matrix: every ordered pair of lab VMs, every probe, expected against real packets.

Expectations come from :mod:`netpersona.lab.expect` (the spec, not the compiler). Reality
comes from :mod:`netpersona.probe`: listeners in every VM, senders in each VM in turn. For a
probe that disagrees, the drop counters that moved on either VM while its sender ran are
attached, so the matrix says which rule fired.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from netpersona.dataplane.drift import drop_counters
from netpersona.dataplane.kernel import LinuxKernel
from netpersona.errors import NetpersonaError
from netpersona.lab.expect import Host, Probe, ProbeKind, expected, tcp_allowed_port
from netpersona.lab.scenario import ProbeSettings, Scenario, broadcast_of
from netpersona.lab.topology import Topology
from netpersona.model.protocols import L4
from netpersona.probe.runner import Listener, listening, send_probes

__all__ = ["PAIR_KINDS", "Cell", "GROUP_KINDS", "run_matrix"]

PAIR_KINDS = (ProbeKind.TCP_ALLOWED, ProbeKind.TCP_DENIED, ProbeKind.UDP, ProbeKind.ICMP)
GROUP_KINDS = (ProbeKind.BROADCAST, ProbeKind.MULTICAST_LISTED, ProbeKind.MULTICAST_UNLISTED)
LISTEN_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class Cell:
    src: str
    dst: str
    kind: ProbeKind
    expected: bool | None  # None: the probe does not apply (no allowed TCP port to try)
    actual: bool | None
    counters: tuple[str, ...] = ()  # drop counters that moved while the probe ran

    @property
    def mismatch(self) -> bool:
        return self.expected is not None and self.expected != self.actual


def probes_for(src: Host, dst: Host, settings: ProbeSettings) -> dict[ProbeKind, Probe | None]:
    allowed = tcp_allowed_port(dst)
    return {
        ProbeKind.TCP_ALLOWED: Probe(ProbeKind.TCP_ALLOWED, L4.TCP, allowed) if allowed else None,
        ProbeKind.TCP_DENIED: Probe(ProbeKind.TCP_DENIED, L4.TCP, settings.tcp_denied),
        ProbeKind.UDP: Probe(ProbeKind.UDP, L4.UDP, settings.udp),
        ProbeKind.ICMP: Probe(ProbeKind.ICMP, L4.ICMP),
        ProbeKind.BROADCAST: Probe(ProbeKind.BROADCAST, L4.UDP, settings.broadcast_udp),
        ProbeKind.MULTICAST_LISTED: Probe(
            ProbeKind.MULTICAST_LISTED, L4.UDP, settings.udp, settings.listed_group
        ),
        ProbeKind.MULTICAST_UNLISTED: Probe(
            ProbeKind.MULTICAST_UNLISTED, L4.UDP, settings.udp, settings.unlisted_group
        ),
    }


def _wire(src: str, dst: Host, probe: Probe, scenario: Scenario) -> dict[str, Any]:
    """The probe as netpersona.probe's sender takes it."""
    address = str(dst.interfaces[0].ip)
    ident = f"{src}>{dst.name if probe.kind in PAIR_KINDS else '*'}>{probe.kind}"
    if probe.kind is ProbeKind.ICMP:
        return {"id": ident, "proto": "icmp", "dst": address, "count": 1, "vary_id": True}
    if probe.kind in (ProbeKind.TCP_ALLOWED, ProbeKind.TCP_DENIED):
        return {"id": ident, "proto": "tcp", "dst": address, "port": probe.port, "timeout": 1.0}
    if probe.kind is ProbeKind.UDP:
        return {"id": ident, "proto": "udp", "dst": address, "port": probe.port}
    if probe.kind is ProbeKind.BROADCAST:
        target = str(broadcast_of(scenario))
        return {"id": ident, "proto": "udp", "dst": target, "port": probe.port, "broadcast": True}
    return {"id": ident, "proto": "udp", "dst": probe.group, "port": probe.port, "ifname": "eth0"}


def _counters(topo: Topology, vm: str) -> dict[str, int]:
    with contextlib.suppress(NetpersonaError):
        return {k: v[0] for k, v in drop_counters(LinuxKernel(topo.vms[vm].name)).items()}
    return {}


def run_matrix(
    topo: Topology,
    scenario: Scenario,
    hosts: Sequence[Host],
    *,
    expect_override: Mapping[tuple[str, str, str], bool] | None = None,
) -> list[Cell]:
    """Probe every pair; ``expect_override`` replaces expectations (to show a mismatch)."""
    settings = scenario.probes
    by_name = {h.name: h for h in hosts}
    sent: dict[str, dict[str, Any]] = {}
    moved: dict[str, tuple[str, ...]] = {}
    with contextlib.ExitStack() as stack:
        listeners: dict[str, Listener] = {}
        for host in hosts:
            allowed = tcp_allowed_port(host)
            ports = sorted({settings.tcp_denied, *([allowed] if allowed else [])})
            groups = [
                f"{settings.listed_group}:{settings.udp}",
                f"{settings.unlisted_group}:{settings.udp}",
            ]
            listeners[host.name] = stack.enter_context(
                listening(
                    topo.vms[host.name],
                    tcp=ports,
                    udp=sorted({settings.udp, settings.broadcast_udp}),
                    groups=groups,
                    ifname="eth0",
                    duration=LISTEN_SECONDS,
                )
            )
        for src in hosts:
            wire = []
            for dst in hosts:
                if dst is src:
                    continue
                for kind, probe in probes_for(src, dst, settings).items():
                    if probe is not None and kind in PAIR_KINDS:
                        wire.append(_wire(src.name, dst, probe, scenario))
            for kind, probe in probes_for(src, src, settings).items():
                if probe is not None and kind in GROUP_KINDS:
                    wire.append(_wire(src.name, src, probe, scenario))
            before = {h.name: _counters(topo, h.name) for h in hosts}
            sent.update(send_probes(topo.vms[src.name], wire))
            for host in hosts:
                after = _counters(topo, host.name)
                delta = tuple(
                    f"{host.name}:{name}"
                    for name, value in sorted(after.items())
                    if value > before[host.name].get(name, 0)
                )
                moved[src.name] = moved.get(src.name, ()) + delta
        arrived = {name: listener.tokens() for name, listener in listeners.items()}

    cells = []
    for src in hosts:
        for dst in hosts:
            if dst is src:
                continue
            for kind, probe in probes_for(src, dst, settings).items():
                if probe is None:
                    cells.append(Cell(src.name, dst.name, kind, None, None))
                    continue
                ident = f"{src.name}>{dst.name if kind in PAIR_KINDS else '*'}>{kind}"
                if kind in (ProbeKind.TCP_ALLOWED, ProbeKind.TCP_DENIED, ProbeKind.ICMP):
                    actual = bool(sent.get(ident, {}).get("ok"))
                else:
                    actual = ident in arrived[dst.name]
                want = expected(src, by_name[dst.name], probe)
                if expect_override and (src.name, dst.name, kind.value) in expect_override:
                    want = expect_override[(src.name, dst.name, kind.value)]
                related = tuple(
                    c for c in moved.get(src.name, ()) if c.split(":")[0] in (src.name, dst.name)
                )
                cells.append(
                    Cell(src.name, dst.name, kind, want, actual, related if want != actual else ())
                )
    return cells
