"""What the engine decides for an instance: the persona, why, and the effective document
(an :class:`~netpersona.records.EffectivePersona`, the record the service serves).

A :class:`DecisionTable` makes one decision object per distinct outcome (pin, rule, overlays
applied), shared by every instance that has it, so the effective persona behind it is built
once, however many instances get it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from netpersona.errors import InvalidDocument
from netpersona.policy.document import Overlay, Policy
from netpersona.policy.overlays import apply_overlay
from netpersona.records import EffectivePersona, PersonaVersion

__all__ = ["Decision", "DecisionSource", "DecisionTable", "EffectivePersona"]


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


Effective = tuple[EffectivePersona | None, tuple[str, ...]]  # and the problems met on the way


class DecisionTable:
    """Decisions by outcome, built on demand; ``clear`` when a persona changes (the policy
    changing makes a new table)."""

    def __init__(self, policy: Policy, personas: Mapping[str, PersonaVersion]) -> None:
        self._policy = policy
        self._personas = personas  # the engine's catalog, read as it changes
        self._made: dict[tuple[Any, ...], tuple[Decision, frozenset[str]]] = {}
        self._effective: dict[tuple[str, int, tuple[int, ...]], Effective] = {}

    def clear(self) -> None:
        self._made.clear()
        self._effective.clear()

    def base(self, pin: str | None, rule: int) -> tuple[DecisionSource, str | None]:
        """Where the persona comes from and which it is, before overlays (rule -1: none)."""
        policy = self._policy
        if pin is not None:
            return DecisionSource.PIN, pin
        if rule >= 0:
            return DecisionSource.RULE, policy.rules[rule].persona
        if policy.default is not None:
            return DecisionSource.DEFAULT, policy.default
        return DecisionSource.NONE, None

    def get(
        self, pin: str | None, rule: int, applied: tuple[int, ...]
    ) -> tuple[Decision, frozenset[str]]:
        """The decision, and the personas it uses (a change to one of them changes it)."""
        key = (pin, rule, applied)
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = self._make(pin, rule, applied)
        return made

    def _make(
        self, pin: str | None, rule: int, applied: tuple[int, ...]
    ) -> tuple[Decision, frozenset[str]]:
        source, base = self.base(pin, rule)
        if base is None:
            return Decision(source, None, None, (), None), frozenset()
        effective, problems = self._effective_persona(base, applied)
        overlays = self._policy.overlays
        personas = {base} | {
            replacement for i in applied if (replacement := overlays[i].changes.persona)
        }
        decision = Decision(
            source,
            base,
            self._policy.rules[rule].name if rule >= 0 and pin is None else None,
            effective.overlays if effective else (),
            effective,
            problems,
        )
        return decision, frozenset(personas)

    def _effective_persona(self, base: str, applied: tuple[int, ...]) -> Effective:
        source = self._personas.get(base)
        if source is None:
            return None, (f"persona {base} does not exist",)
        key = (base, source.version, applied)
        cached = self._effective.get(key)
        if cached is None:
            overlays = [self._policy.overlays[i] for i in applied]
            cached = self._effective[key] = self._build(source, overlays)
        return cached

    def _build(self, source: PersonaVersion, overlays: list[Overlay]) -> Effective:
        if source.problems is not None:
            return None, (f"persona {source.name} v{source.version} is invalid: {source.problems}",)
        effective = source.effective()
        problems: list[str] = []
        for overlay in overlays:
            current: PersonaVersion | None = None
            if overlay.changes.persona is not None:
                current = self._personas.get(overlay.changes.persona)
                if current is None:
                    problems.append(
                        f"overlay {overlay.name} skipped: persona "
                        f"{overlay.changes.persona} does not exist"
                    )
                    continue
            body = apply_overlay(
                effective.document, overlay, None if current is None else current.body
            )
            name, version = (
                (effective.name, effective.version)
                if current is None
                else (current.name, current.version)
            )
            try:
                effective = EffectivePersona.of(
                    name, version, (*effective.overlays, overlay.name), body
                )
            except InvalidDocument as exc:
                problems.append(f"overlay {overlay.name} skipped: the result is invalid: {exc}")
        return effective, tuple(problems)
