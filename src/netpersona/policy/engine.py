"""The policy engine: instances, context and the persona catalog in, a decision per instance out.

Pure and incremental. The engine keeps, for every instance, the :class:`Decision` it currently
has; :meth:`PolicyEngine.recompute` takes changes (labels, pins, instances, context, personas,
the policy) and returns exactly the instances whose decision changed, having recomputed only
what each change can affect:

* instances are decided by *signature*: the projection of the instance onto what the policy
  can tell apart and many instances share (the label keys its selectors name, or every label
  when a condition reads ``labels``; which policy subnets hold its addresses; which listed
  interfaces it has; the pin). The rules are walked once per signature; what only the instance
  can answer (a name glob, a condition reading its name or addresses) is its *residual*, tested
  per instance and only for the rules and overlays the walk could not settle
  (:mod:`netpersona.policy.compiled`). Instances whose signature leaves nothing open share one
  decision, computed once;
* a label or pin change moves one instance to another signature, nothing else; a change of
  name or addresses settles that instance again;
* a context change re-decides the signatures that examined a rule or overlay reading that key
  (rules after the one that matched were never examined and cannot matter);
* a persona change re-decides the signatures whose decision used that persona;
* rules are found through an index on one ``In`` / ``matchLabels`` requirement each, so an
  instance is only tested against rules it could match, in policy order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from netpersona.errors import NotFound
from netpersona.model.collector import collector_paused
from netpersona.policy.compiled import CompiledPolicy, Plan, Signature
from netpersona.policy.decision import Decision, DecisionTable
from netpersona.policy.document import Match, Policy
from netpersona.policy.explain import Explanation, explain_decision
from netpersona.policy.matching import context_failure
from netpersona.records import Instance, PersonaVersion

__all__ = [
    "Change",
    "ContextChanged",
    "InstanceRemoved",
    "InstanceUpserted",
    "LabelsChanged",
    "PersonaChanged",
    "PinChanged",
    "PolicyChanged",
    "PolicyEngine",
]


# --- changes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstanceUpserted:
    instance: Instance


@dataclass(frozen=True, slots=True)
class InstanceRemoved:
    instance_id: str


@dataclass(frozen=True, slots=True)
class LabelsChanged:
    instance_id: str
    labels: Mapping[str, str]  # the full new label set


@dataclass(frozen=True, slots=True)
class PinChanged:
    instance_id: str
    pin: str | None


@dataclass(frozen=True, slots=True)
class ContextChanged:
    key: str
    value: str | None  # None: deleted


@dataclass(frozen=True, slots=True)
class PersonaChanged:
    name: str
    version: PersonaVersion | None  # None: deleted


@dataclass(frozen=True, slots=True)
class PolicyChanged:
    policy: Policy


Change = (
    InstanceUpserted
    | InstanceRemoved
    | LabelsChanged
    | PinChanged
    | ContextChanged
    | PersonaChanged
    | PolicyChanged
)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """A signature's plan, and the decision all its members share when it leaves none open."""

    plan: Plan
    decision: Decision | None  # None: each member is settled on its own
    personas: frozenset[str]  # every persona a member's decision may use

    @property
    def context_keys(self) -> frozenset[str]:
        return self.plan.context_keys


class PolicyEngine:
    """Decides every instance's persona and keeps the decisions current as inputs change.

    Not thread-safe: one owner applies changes (the service does so under its write lock).
    """

    def __init__(
        self,
        policy: Policy,
        personas: Mapping[str, PersonaVersion],
        context: Mapping[str, str] | None = None,
        instances: Iterable[Instance] = (),
    ) -> None:
        self._personas: dict[str, PersonaVersion] = dict(personas)
        self._context: dict[str, str] = dict(context or {})
        self._instances: dict[str, Instance] = {i.id: i for i in instances}
        self._touched: dict[str, Decision | None] = {}
        self._install(policy)
        with collector_paused():  # collections cost a third of a full recompute
            self._decide_all()

    # --- public API ---------------------------------------------------------------------------

    @property
    def policy(self) -> Policy:
        return self._compiled.policy

    @property
    def decisions(self) -> Mapping[str, Decision]:
        """The current decision of every instance (read-only view)."""
        return self._decisions

    @property
    def instances(self) -> Mapping[str, Instance]:
        return self._instances

    @property
    def context(self) -> Mapping[str, str]:
        return self._context

    @property
    def personas(self) -> Mapping[str, PersonaVersion]:
        return self._personas

    @property
    def signatures(self) -> int:
        """How many distinct signatures the fleet has (how many times the rules were walked)."""
        return len(self._members)

    @property
    def settled_alone(self) -> int:
        """How many instances have a residual to be tested on their own."""
        return sum(
            len(members)
            for signature, members in self._members.items()
            if self._outcomes[signature].decision is None
        )

    def decision(self, instance_id: str) -> Decision:
        return self._decisions[instance_id]

    def evaluate(self, instance: Instance) -> Decision:
        """The decision ``instance`` would get now; changes nothing."""
        signature = self._signature(instance)
        outcome = self._outcomes.get(signature) or self._decide(signature)
        return self._member_decision(outcome, instance)

    def explain(self, instance: str | Instance) -> Explanation:
        """Why an instance (by id, or facts not in the fleet) has the decision it has."""
        facts = self._instances[instance] if isinstance(instance, str) else instance
        decision = self._decisions[facts.id] if isinstance(instance, str) else self.evaluate(facts)
        return explain_decision(
            facts, decision, self.policy, self._context_view, self._context_vars
        )

    def recompute(self, changes: Iterable[Change]) -> dict[str, Decision]:
        """Apply ``changes``; return the instances whose decision changed, with the new one.

        Removed instances are not in the result (they have no decision any more). A label or
        pin change for an instance that does not exist (at that point of the batch) raises
        :class:`~netpersona.errors.NotFound` before anything is applied.
        """
        batch = list(changes)
        present: dict[str, bool] = {}  # what the batch itself adds or removes, in order
        for change in batch:
            if isinstance(change, InstanceUpserted):
                present[change.instance.id] = True
            elif isinstance(change, InstanceRemoved):
                present[change.instance_id] = False
            elif isinstance(change, LabelsChanged | PinChanged) and not present.get(
                change.instance_id, change.instance_id in self._instances
            ):
                raise NotFound(f"instance {change.instance_id} does not exist")
        with collector_paused():  # collections cost a third of a full recompute
            for change in batch:
                self._apply(change)
        changed = {}
        for instance_id, old in self._touched.items():
            new = self._decisions.get(instance_id)
            if new is not None and new != old:
                changed[instance_id] = new
        self._touched = {}
        return changed

    # --- state changes --------------------------------------------------------------------

    def _remember(self, instance_id: str) -> None:
        if instance_id not in self._touched:
            self._touched[instance_id] = self._decisions.get(instance_id)

    def _apply(self, change: Change) -> None:
        if isinstance(change, InstanceUpserted):
            self._place(change.instance)
        elif isinstance(change, InstanceRemoved):
            self._remove(change.instance_id)
        elif isinstance(change, LabelsChanged):
            old = self._instances[change.instance_id]
            self._place(replace(old, labels=tuple(sorted(change.labels.items()))))
        elif isinstance(change, PinChanged):
            old = self._instances[change.instance_id]
            self._place(replace(old, pin=change.pin))
        elif isinstance(change, ContextChanged):
            self._set_context(change.key, change.value)
        elif isinstance(change, PersonaChanged):
            self._set_persona(change.name, change.version)
        else:
            for instance_id in self._decisions:
                self._remember(instance_id)
            self._install(change.policy)
            self._decide_all()

    def _place(self, instance: Instance) -> None:
        self._remember(instance.id)
        before = self._instances.get(instance.id)
        # Signatures are not stored per instance: computing the old one again costs less than
        # keeping a map of the whole fleet current.
        old = None if before is None else self._signature(before)
        self._instances[instance.id] = instance
        signature = self._signature(instance)
        if signature == old:
            # Same signature, but the name or addresses a residual reads may have changed.
            outcome = self._outcomes[signature]
            if outcome.decision is None:
                self._decisions[instance.id] = self._member_decision(outcome, instance)
            return
        if old is not None:
            self._leave(instance.id, old)
        self._join(instance.id, signature)

    def _remove(self, instance_id: str) -> None:
        self._remember(instance_id)  # removed then re-added in one batch: compare with this
        before = self._instances.pop(instance_id, None)
        self._decisions.pop(instance_id, None)
        if before is not None:
            self._leave(instance_id, self._signature(before))

    def _set_context(self, key: str, value: str | None) -> None:
        if value is None:
            self._context.pop(key, None)
        else:
            self._context[key] = value
        if key not in self.policy.context:
            return  # the policy reads only the keys it declares
        self._refresh_context_views()
        compiled = self._compiled
        for index in compiled.rules_by_context.get(key, ()):
            self._rule_ok[index] = self._context_ok(self.policy.rules[index].match)
        for index in compiled.overlays_by_context.get(key, ()):
            self._overlay_ok[index] = self._context_ok(self.policy.overlays[index].match)
        self._redecide(set(self._by_context.get(key, ())))

    def _set_persona(self, name: str, version: PersonaVersion | None) -> None:
        if version is None:
            self._personas.pop(name, None)
        else:
            self._personas[name] = version
        self._table.clear()  # small, and a persona may be an overlay's replacement too
        self._redecide(set(self._by_persona.get(name, ())))

    def _redecide(self, signatures: set[Signature]) -> None:
        for signature in signatures:
            members = self._members.get(signature)
            if not members:
                continue
            old = self._outcomes[signature]
            self._unindex(signature, old)
            outcome = self._decide(signature)
            self._outcomes[signature] = outcome
            self._index(signature, outcome)
            if old.decision is None or outcome.decision is None:
                self._resettle(members, outcome)
            elif outcome.decision != old.decision:
                # Every member had the signature's old decision (or was touched earlier in
                # this batch, and keeps what it had before the batch).
                touched = self._touched
                if touched:
                    fresh = [i for i in members if i not in touched]
                    touched.update(dict.fromkeys(fresh, old.decision))
                else:
                    touched.update(dict.fromkeys(members, old.decision))
                self._decisions.update(dict.fromkeys(members, outcome.decision))

    def _resettle(self, members: set[str], outcome: _Outcome) -> None:
        """Decide each member again, remembering what those that change had before."""
        decisions, touched, instances = self._decisions, self._touched, self._instances
        for instance_id in members:
            new = self._member_decision(outcome, instances[instance_id])
            old = decisions[instance_id]
            if new != old:
                if instance_id not in touched:
                    touched[instance_id] = old
                decisions[instance_id] = new

    # --- signatures -----------------------------------------------------------------------

    def _signature(self, instance: Instance) -> Signature:
        return self._compiled.signature(instance)

    def _join(self, instance_id: str, signature: Signature) -> None:
        members = self._members.get(signature)
        if members is None:
            members = self._members[signature] = set()
            outcome = self._decide(signature)
            self._outcomes[signature] = outcome
            self._index(signature, outcome)
        members.add(instance_id)
        outcome = self._outcomes[signature]
        self._decisions[instance_id] = self._member_decision(outcome, self._instances[instance_id])

    def _leave(self, instance_id: str, signature: Signature) -> None:
        members = self._members[signature]
        members.discard(instance_id)
        if not members:
            self._forget(signature)

    def _forget(self, signature: Signature) -> None:
        del self._members[signature]
        self._unindex(signature, self._outcomes.pop(signature))

    def _index(self, signature: Signature, outcome: _Outcome) -> None:
        for key in outcome.context_keys:
            self._by_context.setdefault(key, set()).add(signature)
        for name in outcome.personas:
            self._by_persona.setdefault(name, set()).add(signature)

    def _unindex(self, signature: Signature, outcome: _Outcome) -> None:
        for key in outcome.context_keys:
            self._by_context[key].discard(signature)
        for name in outcome.personas:
            self._by_persona[name].discard(signature)

    # --- deciding -------------------------------------------------------------------------

    def _install(self, policy: Policy) -> None:
        self._compiled = CompiledPolicy(policy)
        self._table = DecisionTable(policy, self._personas)
        self._refresh_context_views()
        self._rule_ok = [self._context_ok(r.match) for r in policy.rules]
        self._overlay_ok = [self._context_ok(o.match) for o in policy.overlays]

    def _refresh_context_views(self) -> None:
        declared = self.policy.context
        view: dict[str, str] = {}
        for key, spec in declared.items():
            value = self._context.get(key, spec.default)
            if value is not None:
                view[key] = value
        self._context_view = view
        self._context_vars = {key: view.get(key, "") for key in declared}

    def _context_ok(self, match: Match) -> bool:
        return context_failure(match, self._context_view, self._context_vars) is None

    def _decide_all(self) -> None:
        self._members: dict[Signature, set[str]] = {}
        self._outcomes: dict[Signature, _Outcome] = {}
        self._by_context: dict[str, set[Signature]] = {}
        self._by_persona: dict[str, set[Signature]] = {}
        self._decisions: dict[str, Decision] = {}
        # Group first, then decide each signature once: the same as joining one by one,
        # without the per-instance bookkeeping calls.
        signature = self._compiled.signature
        groups = self._members
        for instance_id, instance in self._instances.items():
            key = signature(instance)
            group = groups.get(key)
            if group is None:
                groups[key] = {instance_id}
            else:
                group.add(instance_id)
        decisions, instances = self._decisions, self._instances
        for key, ids in groups.items():
            outcome = self._decide(key)
            self._outcomes[key] = outcome
            self._index(key, outcome)
            if outcome.decision is not None:
                decisions.update(dict.fromkeys(ids, outcome.decision))
            else:
                for instance_id in ids:
                    decisions[instance_id] = self._settle(outcome.plan, instances[instance_id])

    def _decide(self, signature: Signature) -> _Outcome:
        c = self._compiled
        plan = c.plan(signature, self._rule_ok, self._overlay_ok, self._context_vars)
        if plan.uniform:
            decision, personas = self._table.get(plan.pin, plan.rule, plan.overlays)
            return _Outcome(plan, decision, personas)
        # Members differ: index under every persona one of them may get.
        rules, overlays = self.policy.rules, self.policy.overlays
        possible = {rules[i].persona for i in plan.residual_rules}
        possible.add(self._table.base(plan.pin, plan.rule)[1] or "")
        possible.update(p for i in plan.overlays if (p := overlays[i].changes.persona))
        possible.discard("")
        return _Outcome(plan, None, frozenset(possible))

    def _member_decision(self, outcome: _Outcome, instance: Instance) -> Decision:
        if outcome.decision is not None:
            return outcome.decision
        return self._settle(outcome.plan, instance)

    def _settle(self, plan: Plan, instance: Instance) -> Decision:
        rule, applied = self._compiled.settle(plan, instance, self._context_vars)
        return self._table.get(plan.pin, rule, applied)[0]
