"""Persona assignment by policy, the service's side: effective personas from the stored policy.

:class:`PolicyPersonas` is the service's :class:`~netpersona.service.views.PersonaResolver`.
It owns one :class:`~netpersona.policy.PolicyEngine`, built from the first fleet read, and on
every later read (after each committed write) it compares the fleet with what the engine was
last given and feeds the engine exactly the differences (instances upserted or removed, which
carries label and pin changes; context keys; persona versions; the policy version), so the
engine recomputes only what those can affect. :meth:`PolicyPersonas.update` takes the same
differences from the store's change sequence (a :class:`~netpersona.store.base.FleetDelta`)
instead, without the fleet read. With no stored policy the engine runs an empty
one: pinned instances get their pin, everyone else nothing.

Effective persona: a pin if the instance has one (only ``enforce`` overlays still apply), else
the policy's decision, else none. A persona whose stored document no longer validates is served
as stored (without overlays), as the service always has: the agent refuses it and says so.

Not thread-safe, like the engine: :class:`~netpersona.service.fleet.Fleet` calls it under its
build lock, and :meth:`PolicyPersonas.engine` hands the engine out under the same lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import structlog

from netpersona.errors import FieldError, InvalidDocument
from netpersona.policy import (
    Change,
    ContextChanged,
    Decision,
    InstanceRemoved,
    InstanceUpserted,
    PersonaChanged,
    Policy,
    PolicyChanged,
    PolicyEngine,
    parse_policy,
    parse_policy_tests,
    require_passing,
    run_policy_tests,
)
from netpersona.records import EffectivePersona, Instance, PersonaVersion
from netpersona.store.base import FleetData, FleetDelta, PolicyVersion

__all__ = [
    "EMPTY_POLICY",
    "PolicyPersonas",
    "check_policy",
    "policy_of",
    "split_policy_document",
]

log = structlog.get_logger("netpersona.service")

EMPTY_POLICY = parse_policy({"rules": []})
TESTS_KEY = "tests"


def split_policy_document(document: object) -> tuple[object, object | None]:
    """A stored or submitted policy body -> (the policy document, its tests document or None).

    The body is the policy document as written (``{"persona_policy": {...}}`` or the bare
    mapping), optionally with a top-level ``tests`` key holding a policy tests document.
    """
    if isinstance(document, Mapping) and TESTS_KEY in document:
        rest = {k: v for k, v in document.items() if k != TESTS_KEY}
        return rest, document[TESTS_KEY]
    return document, None


def _prefixed(exc: InvalidDocument, prefix: str) -> InvalidDocument:
    return InvalidDocument([FieldError(prefix + e.pointer, e.message) for e in exc.errors])


def check_policy(document: object, data: FleetData) -> Policy:
    """Parse a submitted policy against the catalog in ``data`` and run the tests it carries.

    Raises :class:`InvalidDocument` (pointers into the submitted body) for a bad policy, a bad
    tests document or a failing test; nothing is stored then.
    """
    policy_document, tests_document = split_policy_document(document)
    policy = parse_policy(policy_document, personas=set(data.personas))
    if tests_document is not None:
        inventory = {i.id: i for i in data.instances}
        try:
            tests = parse_policy_tests(tests_document, inventory)
            results = run_policy_tests(policy, data.personas, tests)
            require_passing(results)
        except InvalidDocument as exc:
            raise _prefixed(exc, "/" + TESTS_KEY) from None
    return policy


def policy_of(version: PolicyVersion | None) -> Policy:
    """The stored policy compiled (catalog references were checked when it was saved)."""
    if version is None:
        return EMPTY_POLICY
    try:
        return parse_policy(split_policy_document(version.body)[0])
    except InvalidDocument as exc:
        # Saved past the checks or judged by newer rules: never fatal to the service.
        log.error(
            "stored policy does not compile; serving pins only",
            version=version.version,
            errors=[str(e) for e in exc.errors],
        )
        return EMPTY_POLICY


class PolicyPersonas:
    """The effective persona of every instance, kept by a policy engine fed with each write."""

    def __init__(self) -> None:
        self._engine: PolicyEngine | None = None
        self._policy_version: int | None = None
        self._policy: Policy = EMPTY_POLICY
        self._known: dict[str, Instance] = {}  # the instances the engine was last given
        self._personas: dict[str, PersonaVersion] = {}
        self._context: dict[str, str] = {}
        self._result: dict[str, EffectivePersona] = {}
        self._served: dict[Decision, EffectivePersona | None] = {}

    @property
    def engine(self) -> PolicyEngine:
        """The engine as of the last resolve (call only under the fleet's build lock)."""
        assert self._engine is not None, "resolve() has not run yet"
        return self._engine

    @property
    def policy(self) -> Policy:
        return self._policy

    def resolve(self, data: FleetData) -> Mapping[str, EffectivePersona]:
        version = None if data.policy is None else data.policy.version
        policy_changed = self._engine is None or version != self._policy_version
        if policy_changed:
            self._policy = policy_of(data.policy)
            self._policy_version = version
        if self._engine is None:
            self._engine = PolicyEngine(
                self._policy,
                data.personas,
                data.context,
                data.instances,
            )
            self._remember(data)
            self._served.clear()
            self._result = {}
            self._set_all(self._engine.decisions)
            return self._result
        changes = self._changes(data)
        if policy_changed:
            changes.append(PolicyChanged(self._policy))
        self._remember(data)
        return self._recompute(changes)[0]

    def _recompute(self, changes: list[Change]) -> tuple[Mapping[str, EffectivePersona], set[str]]:
        """Feed ``changes`` to the engine (what it was given is remembered already); the
        effective personas, and the instances whose effective persona may differ."""
        assert self._engine is not None
        if not changes:
            return self._result, set()
        if any(isinstance(c, PersonaChanged | PolicyChanged) for c in changes):
            self._served.clear()
        changed = self._engine.recompute(changes)
        result = dict(self._result)  # views built before keep their mapping unchanged
        removed = {c.instance_id for c in changes if isinstance(c, InstanceRemoved)}
        for instance_id in removed:
            result.pop(instance_id, None)
        self._result = result
        self._set_all(changed)
        return self._result, set(changed) | removed

    def update(self, delta: FleetDelta) -> tuple[Mapping[str, EffectivePersona], set[str]]:
        """:meth:`resolve` after ``delta`` (what changed since the last call): the effective
        personas, and the instances whose effective persona may differ. Costs what the
        engine's recompute of the instances those changes concern costs (a persona: its
        holders), not a pass over the fleet."""
        assert self._engine is not None, "resolve() has not run yet"
        changes: list[Change] = []
        for name, persona in delta.personas.items():
            old = self._personas.get(name)
            if persona is None:
                if self._personas.pop(name, None) is not None:
                    changes.append(PersonaChanged(name, None))
            elif old is None or old.version != persona.version:
                self._personas[name] = persona
                changes.append(PersonaChanged(name, persona))
        for key, value in delta.context.items():
            if self._context.get(key) != value:
                if value is None:
                    del self._context[key]
                else:
                    self._context[key] = value
                changes.append(ContextChanged(key, value))
        for instance in delta.upserted:
            old_instance = self._known.get(instance.id)
            self._known[instance.id] = instance
            if old_instance is None or (
                old_instance is not instance and _decides(old_instance) != _decides(instance)
            ):
                changes.append(InstanceUpserted(instance))
        for instance_id in delta.removed:
            if self._known.pop(instance_id, None) is not None:
                changes.append(InstanceRemoved(instance_id))
        if delta.policy_changed:
            version = None if delta.policy is None else delta.policy.version
            if version != self._policy_version:
                self._policy = policy_of(delta.policy)
                self._policy_version = version
                changes.append(PolicyChanged(self._policy))
        return self._recompute(changes)

    # --- feeding the engine --------------------------------------------------------------

    def _remember(self, data: FleetData) -> None:
        self._known = {i.id: i for i in data.instances}
        self._personas = dict(data.personas)
        self._context = dict(data.context)

    def _changes(self, data: FleetData) -> list[Change]:
        changes: list[Change] = []
        for name, persona in data.personas.items():
            old = self._personas.get(name)
            if old is None or old.version != persona.version:
                changes.append(PersonaChanged(name, persona))
        changes += [PersonaChanged(n, None) for n in self._personas if n not in data.personas]
        for key, value in data.context.items():
            if self._context.get(key) != value:
                changes.append(ContextChanged(key, value))
        changes += [ContextChanged(k, None) for k in self._context if k not in data.context]
        return changes + self._instance_changes(data.instances)

    def _instance_changes(self, instances: tuple[Instance, ...]) -> list[Change]:
        # The store hands out the same object for a row that did not change, so a pass by
        # identity finds the changed ones.
        known = self._known
        changes: list[Change] = []
        new = 0
        for instance in instances:
            old = known.get(instance.id)
            if old is instance:
                continue
            new += old is None
            if old is None or _decides(old) != _decides(instance):
                changes.append(InstanceUpserted(instance))
        if len(known) + new > len(instances):
            present = {i.id for i in instances}
            changes += [InstanceRemoved(i) for i in known if i not in present]
        return changes

    # --- what is served ------------------------------------------------------------------

    def _set_all(self, decisions: Mapping[str, Decision]) -> None:
        """Serve each instance the effective persona of its decision: one object for equal
        decisions, looked up once for a run of one decision object (the engine hands the
        members of one outcome the same one, and a decision's hash is computed from its
        fields every time)."""
        result = self._result
        last: Decision | None = None
        served: EffectivePersona | None = None
        for instance_id, decision in decisions.items():
            if decision is not last:
                last, served = decision, self._served_for(decision)
            if served is None:
                result.pop(instance_id, None)
            else:
                result[instance_id] = served

    def _served_for(self, decision: Decision) -> EffectivePersona | None:
        try:
            return self._served[decision]
        except KeyError:
            if len(self._served) > 4096:  # distinct decisions are few; never let it grow
                self._served.clear()
            served = self._served[decision] = self._effective(decision, self._personas)
            return served

    @staticmethod
    def _effective(
        decision: Decision, personas: Mapping[str, PersonaVersion]
    ) -> EffectivePersona | None:
        if decision.effective is not None:
            return decision.effective
        if decision.persona is not None and decision.persona in personas:
            # The assigned persona exists but does not validate: serve it as stored.
            log.warning(
                "serving a persona that does not validate, without overlays",
                persona=decision.persona,
                problems=list(decision.problems),
            )
            return personas[decision.persona].effective()
        return None


def _decides(instance: Instance) -> Instance:
    """What of an instance a decision may depend on: the record without the store's revision
    and times (a write that changed nothing else need not reach the engine)."""
    return replace(instance, revision=0, created_at=0.0, updated_at=0.0)
