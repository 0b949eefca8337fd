"""Why an instance has its persona: the deciding rule, each earlier rule's reason, the overlays.

Explain does not use the engine's index or signatures: it walks every rule and overlay in
order against the whole instance, which is slower but shows a reason for each, and a test
checks that it always agrees with the engine's decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from netpersona.policy.decision import Decision, DecisionSource
from netpersona.policy.document import Match, Policy
from netpersona.policy.matching import Subject, context_failure, instance_failure
from netpersona.records import Instance

__all__ = ["Explanation", "Step", "StepOutcome", "explain_decision", "subject_of"]


class StepOutcome(StrEnum):
    MATCHED = "matched"
    NO_MATCH = "no match"
    NOT_REACHED = "not reached"  # an earlier rule matched
    NOT_CONSULTED = "not consulted"  # the instance is pinned
    APPLIED = "applied"
    NOT_APPLIED = "not applied"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Step:
    kind: str  # rule | overlay
    name: str
    pointer: str
    outcome: StepOutcome
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "pointer": self.pointer,
            "outcome": self.outcome.value,
            "reason": self.reason,
        }

    def line(self) -> str:
        reason = f": {self.reason}" if self.reason else ""
        return f"{self.kind} {self.name} ({self.pointer}) {self.outcome.value}{reason}"


@dataclass(frozen=True, slots=True)
class Explanation:
    instance_id: str
    decision: Decision
    rules: tuple[Step, ...]
    overlays: tuple[Step, ...]

    @property
    def summary(self) -> str:
        d = self.decision
        if d.source is DecisionSource.RULE:
            head = f"persona {d.persona} from rule {d.rule}"
        elif d.source is DecisionSource.DEFAULT:
            head = f"persona {d.persona}: no rule matched, the policy default"
        elif d.source is DecisionSource.PIN:
            head = f"persona {d.persona}: pinned by hand, rules not consulted"
        else:
            head = "no persona: no rule matched and the policy has no default"
        if d.overlays:
            head += f"; overlays {', '.join(d.overlays)}"
        if d.effective is not None and d.effective.name != d.persona:
            head += f", which replace it with {d.effective.name}"
        if d.effective is not None:
            head += f" (effective {d.effective.digest[:12]})"
        return head

    def lines(self) -> list[str]:
        out = [f"{self.instance_id}: {self.summary}"]
        out += [f"  {s.line()}" for s in self.rules]
        out += [f"  {s.line()}" for s in self.overlays]
        out += [f"  problem: {p}" for p in self.decision.problems]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance_id,
            "summary": self.summary,
            "decision": self.decision.to_json(),
            "rules": [s.to_json() for s in self.rules],
            "overlays": [s.to_json() for s in self.overlays],
        }


def subject_of(instance: Instance) -> Subject:
    return Subject(
        dict(instance.labels),
        instance.name,
        instance.ips(),
        instance.subnets(),
        instance.interface_names(),
    )


def _why_not(
    match: Match, subject: Subject, context: Mapping[str, str], variables: Mapping[str, str]
) -> str:
    return (
        context_failure(match, context, variables)
        or instance_failure(match, subject, variables)
        or ""
    )


def explain_decision(
    instance: Instance,
    decision: Decision,
    policy: Policy,
    context: Mapping[str, str],
    variables: Mapping[str, str],
) -> Explanation:
    """``context``: the declared keys that have a value; ``variables``: all, unset as ""."""
    subject = subject_of(instance)
    rules: list[Step] = []
    decided = instance.pin is not None
    for rule in policy.rules:
        if instance.pin is not None:
            rules.append(Step("rule", rule.name, rule.pointer, StepOutcome.NOT_CONSULTED, "pinned"))
            continue
        if decided:
            rules.append(Step("rule", rule.name, rule.pointer, StepOutcome.NOT_REACHED))
            continue
        why = _why_not(rule.match, subject, context, variables)
        if why:
            rules.append(Step("rule", rule.name, rule.pointer, StepOutcome.NO_MATCH, why))
        else:
            decided = True
            rules.append(
                Step("rule", rule.name, rule.pointer, StepOutcome.MATCHED, f"-> {rule.persona}")
            )
    overlays: list[Step] = []
    for overlay in policy.overlays:
        if instance.pin is not None and not overlay.enforce:
            overlays.append(
                Step(
                    "overlay",
                    overlay.name,
                    overlay.pointer,
                    StepOutcome.SKIPPED,
                    "pinned, and the overlay is not enforce",
                )
            )
            continue
        why = _why_not(overlay.match, subject, context, variables)
        if why:
            overlays.append(
                Step("overlay", overlay.name, overlay.pointer, StepOutcome.NOT_APPLIED, why)
            )
        elif overlay.name in decision.overlays:
            overlays.append(Step("overlay", overlay.name, overlay.pointer, StepOutcome.APPLIED))
        else:
            reason = next(
                (p for p in decision.problems if p.startswith(f"overlay {overlay.name} ")),
                "no persona to apply it to",
            )
            overlays.append(
                Step("overlay", overlay.name, overlay.pointer, StepOutcome.SKIPPED, reason)
            )
    return Explanation(instance.id, decision, tuple(rules), tuple(overlays))
