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

import yaml

from netpersona.dataplane.drift import drop_counters
from netpersona.dataplane.kernel import LinuxKernel
from netpersona.errors import NetpersonaError
from netpersona.lab.expect import Host, Probe, ProbeKind, expected, tcp_allowed_port
from netpersona.lab.scenario import ProbeSettings, Scenario, broadcast_of
from netpersona.lab.topology import Topology
from netpersona.model.protocols import L4
from netpersona.policy import PolicyEngine, parse_policy
from netpersona.probe.runner import Listener, listening, send_probes
from netpersona.reachability import endpoints_of
from netpersona.records import Instance, Interface, PersonaVersion

__all__ = [
    "PAIR_KINDS",
    "Cell",
    "GROUP_KINDS",
    "expected_matrix",
    "planned_hosts",
    "probes_for",
    "run_matrix",
]

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


def expected_matrix(
    hosts: Sequence[Host], settings: ProbeSettings
) -> dict[tuple[str, str, ProbeKind], bool | None]:
    """What the spec says every probe of the matrix must do (None: the probe does not apply)."""
    return {
        (src.name, dst.name, kind): None if probe is None else expected(src, dst, probe)
        for src in hosts
        for dst in hosts
        if dst is not src
        for kind, probe in probes_for(src, dst, settings).items()
    }


def planned_hosts(scenario: Scenario, context: Mapping[str, str]) -> list[Host]:
    """The lab's VMs with the personas its policy assigns in ``context``, decided here by the
    policy engine from the scenario's files (no service, no kernel), in scenario order."""
    personas = {}
    for name, path in scenario.personas.items():
        document = yaml.safe_load(path.read_text())
        personas[name] = PersonaVersion.of(name, 1, document.get("network_persona", document))
    policy = parse_policy(yaml.safe_load(scenario.policy.read_text()), personas)
    instances = [
        Instance(
            id=vm.name,
            name=vm.name,
            addresses=tuple(str(i.address.ip) for i in vm.interfaces),
            interfaces=tuple(Interface(i.name, (str(i.address),)) for i in vm.interfaces),
            labels=tuple(sorted(vm.labels.items())),
        )
        for vm in scenario.vms
    ]
    endpoints = endpoints_of(PolicyEngine(policy, personas, dict(context), instances))
    return [endpoints[vm.name] for vm in scenario.vms]


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


def _listen(
    stack: contextlib.ExitStack, topo: Topology, settings: ProbeSettings, hosts: Sequence[Host]
) -> dict[str, Listener]:
    """A listener in every VM for every port and group a probe may reach."""
    listeners: dict[str, Listener] = {}
    for host in hosts:
        allowed = tcp_allowed_port(host)
        listeners[host.name] = stack.enter_context(
            listening(
                topo.vms[host.name],
                tcp=sorted({settings.tcp_denied, *([allowed] if allowed else [])}),
                udp=sorted({settings.udp, settings.broadcast_udp}),
                groups=[
                    f"{settings.listed_group}:{settings.udp}",
                    f"{settings.unlisted_group}:{settings.udp}",
                ],
                ifname="eth0",
                duration=LISTEN_SECONDS,
            )
        )
    return listeners


def _probes_of(src: Host, hosts: Sequence[Host], scenario: Scenario) -> list[dict[str, Any]]:
    """What ``src`` sends: a probe of each pair kind to every other VM, and its group probes."""
    settings = scenario.probes
    wire = [
        _wire(src.name, dst, probe, scenario)
        for dst in hosts
        if dst is not src
        for kind, probe in probes_for(src, dst, settings).items()
        if probe is not None and kind in PAIR_KINDS
    ]
    wire += [
        _wire(src.name, src, probe, scenario)
        for kind, probe in probes_for(src, src, settings).items()
        if probe is not None and kind in GROUP_KINDS
    ]
    return wire


def _counters_moved(
    topo: Topology, hosts: Sequence[Host], before: Mapping[str, Mapping[str, int]]
) -> tuple[str, ...]:
    """``vm:counter`` for every drop counter that grew since ``before``."""
    moved: tuple[str, ...] = ()
    for host in hosts:
        after = _counters(topo, host.name)
        moved += tuple(
            f"{host.name}:{name}"
            for name, value in sorted(after.items())
            if value > before[host.name].get(name, 0)
        )
    return moved


def _judge(
    hosts: Sequence[Host],
    settings: ProbeSettings,
    sent: Mapping[str, Mapping[str, Any]],
    arrived: Mapping[str, Any],
    moved: Mapping[str, tuple[str, ...]],
    expect_override: Mapping[tuple[str, str, str], bool] | None,
) -> list[Cell]:
    cells = []
    for (a, b, kind), spec in expected_matrix(hosts, settings).items():
        if spec is None:
            cells.append(Cell(a, b, kind, None, None))
            continue
        ident = f"{a}>{b if kind in PAIR_KINDS else '*'}>{kind}"
        if kind in (ProbeKind.TCP_ALLOWED, ProbeKind.TCP_DENIED, ProbeKind.ICMP):
            actual = bool(sent.get(ident, {}).get("ok"))
        else:
            actual = ident in arrived[b]
        want = (expect_override or {}).get((a, b, kind.value), spec)
        related = tuple(c for c in moved.get(a, ()) if c.split(":")[0] in (a, b))
        cells.append(Cell(a, b, kind, want, actual, related if want != actual else ()))
    return cells


def run_matrix(
    topo: Topology,
    scenario: Scenario,
    hosts: Sequence[Host],
    *,
    expect_override: Mapping[tuple[str, str, str], bool] | None = None,
) -> list[Cell]:
    """Probe every pair; ``expect_override`` replaces expectations (to show a mismatch)."""
    sent: dict[str, dict[str, Any]] = {}
    moved: dict[str, tuple[str, ...]] = {}
    with contextlib.ExitStack() as stack:
        listeners = _listen(stack, topo, scenario.probes, hosts)
        for src in hosts:
            before = {h.name: _counters(topo, h.name) for h in hosts}
            sent.update(send_probes(topo.vms[src.name], _probes_of(src, hosts, scenario)))
            moved[src.name] = _counters_moved(topo, hosts, before)
        arrived = {name: listener.tokens() for name, listener in listeners.items()}
    return _judge(hosts, scenario.probes, sent, arrived, moved, expect_override)
