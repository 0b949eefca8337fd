"""What-if: which instances a proposed change would move, and how, without committing it.

The proposal runs on a copy of the engine's inputs; the engine itself is left as it was, so
committing is a separate step (apply the same changes with :meth:`PolicyEngine.recompute`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from netpersona.policy.decision import Decision
from netpersona.policy.engine import Change, PolicyEngine

__all__ = ["DecisionChange", "decision_changes", "document_changes", "trial", "what_if"]


@dataclass(frozen=True, slots=True)
class DecisionChange:
    instance_id: str
    before: Decision | None
    after: Decision | None

    def lines(self) -> list[str]:
        """Human-readable: the persona, rule and overlays, then each field that moves."""
        out = [f"{self.instance_id}: {_headline(self.before)} -> {_headline(self.after)}"]
        before, after = _document(self.before), _document(self.after)
        out += [f"  {line}" for line in document_changes(before, after)]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance_id,
            "before": self.before.to_json() if self.before else None,
            "after": self.after.to_json() if self.after else None,
        }


def _document(decision: Decision | None) -> dict[str, Any]:
    if decision is None or decision.effective is None:
        return {}
    return dict(decision.effective.document)


def _headline(decision: Decision | None) -> str:
    if decision is None or decision.persona is None:
        return "(no persona)"
    by = f"rule {decision.rule}" if decision.rule else decision.source.value
    overlays = f" + {', '.join(decision.overlays)}" if decision.overlays else ""
    served = decision.effective.name if decision.effective else decision.persona
    instead = f" = {served}" if served != decision.persona else ""
    return f"{decision.persona} ({by}){overlays}{instead}"


def document_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """One line per top-level persona field that differs (qos keys one by one)."""
    lines = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, list) and isinstance(new, list) and key != "peers":
            gone = [x for x in old if x not in new]
            added = [x for x in new if x not in old]
            parts = [f"-{x}" for x in gone] + [f"+{x}" for x in added]
            lines.append(f"{key}: {' '.join(map(str, parts)) or 'reordered'}")
        elif isinstance(old, Mapping) or isinstance(new, Mapping):
            inner_old, inner_new = old or {}, new or {}
            for sub in sorted(set(inner_old) | set(inner_new)):
                if inner_old.get(sub) != inner_new.get(sub):
                    lines.append(
                        f"{key}.{sub}: {inner_old.get(sub, '(unset)')} -> "
                        f"{inner_new.get(sub, '(unset)')}"
                    )
        else:
            lines.append(f"{key}: {_show(old)} -> {_show(new)}")
    return lines


def _show(value: Any) -> str:
    return "(unset)" if value is None else str(value)


def trial(engine: PolicyEngine, changes: Iterable[Change]) -> PolicyEngine:
    """A copy of ``engine`` with ``changes`` applied; ``engine`` is left as it was."""
    copy = PolicyEngine(engine.policy, engine.personas, engine.context, engine.instances.values())
    copy.recompute(changes)
    return copy


def decision_changes(before: PolicyEngine, after: PolicyEngine) -> list[DecisionChange]:
    """Every instance whose decision differs between two engines, sorted by instance id."""
    result = []
    for instance_id in sorted(set(before.decisions) | set(after.decisions)):
        old = before.decisions.get(instance_id)
        new = after.decisions.get(instance_id)
        if old != new:
            result.append(DecisionChange(instance_id, old, new))
    return result


def what_if(engine: PolicyEngine, changes: Iterable[Change]) -> list[DecisionChange]:
    """Every instance whose decision ``changes`` would change, sorted by instance id."""
    return decision_changes(engine, trial(engine, changes))
