"""What the engine decides for an instance: the persona, why, and the effective document
(an :class:`~netpersona.records.EffectivePersona`, the record the service serves)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from netpersona.records import EffectivePersona

__all__ = ["Decision", "DecisionSource", "EffectivePersona"]


class DecisionSource(StrEnum):
    RULE = "rule"  # the first matching rule
    DEFAULT = "default"  # no rule matched: the policy's default persona
    PIN = "pin"  # pinned by hand: rules not consulted, enforce overlays still apply
    NONE = "none"  # no rule, no default, no pin: the instance has no persona


@dataclass(frozen=True, slots=True)
class Decision:
    source: DecisionSource
    persona: str | None  # the assigned persona, before overlays
    rule: str | None  # the deciding rule (source RULE)
    overlays: tuple[str, ...]  # overlays applied, in order
    effective: EffectivePersona | None  # None: no persona (or the assigned one is missing)
    problems: tuple[str, ...] = ()  # overlays skipped because their result was invalid, ...

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source.value,
            "persona": self.persona,
            "rule": self.rule,
            "overlays": list(self.overlays),
            "effective": self.effective.to_json() if self.effective else None,
            "problems": list(self.problems),
        }
