"""What changed between two proven matrices of one lab, and which overlay changed it (pure).

A lab run proves the matrix in one network context, changes the context (the threat level),
and proves it again. Between the two, each VM's effective persona may have taken or lost
policy overlays. For every probe whose outcome differs, the spec's oracle
(:mod:`netpersona.reachability`, through :func:`netpersona.lab.expect.explain`) names the check
that drops it in the phase where it is dropped: a VM and a persona field. The cause is the
overlay that came or went on that VM and sets that field; when no overlay sets it, every
overlay that came or went on that VM (or, failing that, on the other one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from netpersona.lab.expect import Host, ProbeKind, explain
from netpersona.lab.matrix import Cell, probes_for
from netpersona.lab.scenario import ProbeSettings
from netpersona.reachability import Reason

__all__ = ["Change", "Phase", "PersonaChange", "changes_between", "persona_changes"]

# Persona fields shown with their values when an overlay changes them; others by name only.
SHOWN_FIELDS = ("communication_mode", "security_profile", "priority")


@dataclass(frozen=True, slots=True)
class Phase:
    """One proven matrix: the context it ran in, the VMs as the spec saw them (in scenario
    order), the overlays the service applied to each VM's persona, and every probe's cell."""

    context: Mapping[str, str]
    hosts: tuple[Host, ...]
    overlays: Mapping[str, tuple[str, ...]]
    cells: tuple[Cell, ...]

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    @property
    def mismatches(self) -> list[Cell]:
        return [c for c in self.cells if c.mismatch]

    @property
    def checked(self) -> int:
        return sum(1 for c in self.cells if c.expected is not None)


@dataclass(frozen=True, slots=True)
class Change:
    """A probe delivered in one phase and dropped in the other."""

    src: str
    dst: str
    kind: ProbeKind
    traffic: str  # what the probe sent, e.g. tcp/5432 or udp/6000 broadcast
    now_delivered: bool  # True: gained in the second phase; False: lost
    decided_by: Reason | None  # the oracle's dropping check, in the phase where it is dropped
    overlays: tuple[str, ...]  # the overlays that came or went and caused it
    on_vm: str | None  # the VM those overlays came or went on


@dataclass(frozen=True, slots=True)
class PersonaChange:
    """How one VM's effective persona differs between the phases."""

    vm: str
    persona: str  # the persona name in the second phase
    added: tuple[str, ...]  # overlays applied now and not before
    removed: tuple[str, ...]  # overlays applied before and not now
    fields: tuple[str, ...] = field(default=())  # "security_profile medium -> high", ...


def persona_changes(before: Phase, after: Phase) -> list[PersonaChange]:
    """Every VM whose persona (name, overlays or fields) differs, in scenario order."""
    found = []
    for new in after.hosts:
        old = before.host(new.name)
        was, now = before.overlays.get(new.name, ()), after.overlays.get(new.name, ())
        added = tuple(o for o in now if o not in was)
        removed = tuple(o for o in was if o not in now)
        fields = _field_changes(old, new)
        if added or removed or fields:
            found.append(PersonaChange(new.name, new.persona_name or "-", added, removed, fields))
    return found


def _field_changes(old: Host, new: Host) -> tuple[str, ...]:
    if old.persona_name != new.persona_name:
        return (f"persona {old.persona_name or '-'} -> {new.persona_name or '-'}",)
    a, b = old.persona, new.persona
    if a is None or b is None or a == b:
        return ()
    shown = tuple(
        f"{name} {getattr(a, name)} -> {getattr(b, name)}"
        for name in SHOWN_FIELDS
        if getattr(a, name) != getattr(b, name)
    )
    others = (
        "allowed_protocols" if a.allowed_protocols != b.allowed_protocols else "",
        "qos_parameters" if a.qos != b.qos else "",
        "multicast_groups" if a.multicast_groups != b.multicast_groups else "",
        "peers" if a.peers != b.peers else "",
    )
    return shown + tuple(f"{name} changed" for name in others if name)


def changes_between(
    before: Phase,
    after: Phase,
    settings: ProbeSettings,
    overlay_fields: Mapping[str, frozenset[str]],
) -> list[Change]:
    """Every probe delivered in one phase and dropped in the other, with its cause.

    ``overlay_fields`` says which persona fields each overlay of the policy sets (an overlay
    that replaces the persona sets them all).
    """
    old = {(c.src, c.dst, c.kind): c for c in before.cells}
    found = []
    for cell in after.cells:
        earlier = old.get((cell.src, cell.dst, cell.kind))
        if earlier is None or earlier.actual is None or cell.actual is None:
            continue
        if earlier.actual == cell.actual:
            continue
        dropped_in = before if cell.actual else after
        src, dst = dropped_in.host(cell.src), dropped_in.host(cell.dst)
        probe = probes_for(src, dst, settings)[cell.kind]
        assert probe is not None  # it ran in both phases
        verdict = explain(src, dst, probe)
        vm, overlays = _cause(before, after, cell, verdict.decisive, overlay_fields)
        found.append(
            Change(
                cell.src,
                cell.dst,
                cell.kind,
                str(verdict.traffic),
                cell.actual,
                verdict.decisive,
                overlays,
                vm,
            )
        )
    return found


def _cause(
    before: Phase,
    after: Phase,
    cell: Cell,
    reason: Reason | None,
    overlay_fields: Mapping[str, frozenset[str]],
) -> tuple[str | None, tuple[str, ...]]:
    """The VM whose overlays changed the outcome, and those overlays."""
    deciding = reason.vm if reason is not None else cell.dst
    other = cell.src if deciding == cell.dst else cell.dst
    for vm in (deciding, other):
        moved = _moved(before.overlays.get(vm, ()), after.overlays.get(vm, ()))
        if not moved:
            continue
        if reason is not None and vm == reason.vm:
            setting = tuple(o for o in moved if reason.field in overlay_fields.get(o, ()))
            if setting:
                return vm, setting
        return vm, moved
    return None, ()


def _moved(was: Sequence[str], now: Sequence[str]) -> tuple[str, ...]:
    return tuple(o for o in now if o not in was) + tuple(o for o in was if o not in now)
