"""Blast radius: what a proposed change does to personas and to who can reach whom.

A persona decision is half the story: relabelling ``api-1`` changes its persona, and also
every VM whose ``peers`` selected it by that persona or label, such as ``db-1`` whose
allowlist loses it. The blast radius is the what-if's decision changes plus every
(from, to, service) pair that gains or loses reachability, computed on a trial copy of the
policy engine; nothing is committed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from netpersona.errors import FieldError, InvalidDocument, UsageError
from netpersona.model import parse_persona
from netpersona.model.parse import escape_pointer
from netpersona.policy import Change, PersonaChanged, PolicyEngine
from netpersona.policy.whatif import DecisionChange, decision_changes, trial
from netpersona.reachability.fleet import ConnectivityChange, connectivity_diff, endpoints_of
from netpersona.records import PersonaVersion

__all__ = ["BlastRadius", "blast_radius", "persona_edits"]


SHOWN = 1000  # connectivity changes listed; the count covers them all


@dataclass(frozen=True, slots=True)
class BlastRadius:
    decisions: list[DecisionChange]
    connectivity: list[ConnectivityChange] | None  # None: too large to compare (see note)
    note: str = ""
    total: int = 0  # connectivity changes in all (more than listed when truncated)

    def lines(self) -> list[str]:
        out = [line for change in self.decisions for line in change.lines()]
        if self.connectivity is None:
            out.append(f"connectivity not compared: {self.note}")
        else:
            out += [change.line() for change in self.connectivity]
            if self.note:
                out.append(self.note)
        return out

    def to_json(self) -> dict[str, Any]:
        connectivity = None
        if self.connectivity is not None:
            connectivity = [c.to_json() for c in self.connectivity]
        return {
            "changes": [{**c.to_json(), "lines": c.lines()} for c in self.decisions],
            "count": len(self.decisions),
            "connectivity": connectivity,
            "connectivity_count": None if connectivity is None else self.total,
            "connectivity_note": self.note,
        }


def persona_edits(engine: PolicyEngine, documents: Mapping[str, Any]) -> list[Change]:
    """Proposed persona documents (name -> wrapped or bare document) as engine changes, each
    a version after the current one; InvalidDocument at ``/personas/<name>/...``."""
    changes: list[Change] = []
    errors: list[FieldError] = []
    for name, document in documents.items():
        at = f"/personas/{escape_pointer(name)}"
        try:
            parse_persona(document)
        except InvalidDocument as exc:
            errors += [FieldError(at + e.pointer, e.message) for e in exc.errors]
            continue
        inner = document.get("network_persona", document)
        current = engine.personas.get(name)
        version = current.version + 1 if current is not None else 1
        changes.append(PersonaChanged(name, PersonaVersion.of(name, version, dict(inner))))
    if errors:
        raise InvalidDocument(errors)
    return changes


def blast_radius(
    engine: PolicyEngine, changes: Iterable[Change], *, max_checks: int = 2_000_000
) -> BlastRadius:
    """The decisions and the reachability ``changes`` would move; ``engine`` is untouched."""
    after = trial(engine, changes)
    decisions = decision_changes(engine, after)
    try:
        moved, total = connectivity_diff(
            endpoints_of(engine), endpoints_of(after), max_checks=max_checks, limit=SHOWN
        )
    except UsageError as exc:
        return BlastRadius(decisions, None, str(exc))
    note = f"showing {len(moved)} of {total} reachability changes" if total > len(moved) else ""
    return BlastRadius(decisions, moved, note, total)
