"""The policy engine: personas assigned from labels, instance attributes and network context.

Pure: documents and facts in, decisions out; no I/O. The pipeline is

    policy document -> parse_policy -> Policy -> PolicyEngine(policy, personas, context,
    instances) -> Decision per instance; recompute(changes) -> the decisions that changed

with ``explain`` (why), ``what_if`` (what a proposed change would move) and policy tests.
"""

from netpersona.policy.decision import Decision, DecisionSource, EffectivePersona
from netpersona.policy.document import ContextKey, Match, Overlay, Policy, Rule, parse_policy
from netpersona.policy.engine import (
    Change,
    ContextChanged,
    InstanceRemoved,
    InstanceUpserted,
    LabelsChanged,
    PersonaChanged,
    PinChanged,
    PolicyChanged,
    PolicyEngine,
)
from netpersona.policy.expectations import (
    PolicyTest,
    PolicyTestResult,
    parse_policy_tests,
    require_passing,
    run_policy_tests,
)
from netpersona.policy.explain import Explanation, Step, StepOutcome
from netpersona.policy.inventory import parse_inventory
from netpersona.policy.whatif import DecisionChange, what_if

__all__ = [
    "Change",
    "ContextChanged",
    "ContextKey",
    "Decision",
    "DecisionChange",
    "DecisionSource",
    "EffectivePersona",
    "Explanation",
    "InstanceRemoved",
    "InstanceUpserted",
    "LabelsChanged",
    "Match",
    "Overlay",
    "PersonaChanged",
    "PinChanged",
    "Policy",
    "PolicyChanged",
    "PolicyEngine",
    "PolicyTest",
    "PolicyTestResult",
    "Rule",
    "Step",
    "StepOutcome",
    "parse_inventory",
    "parse_policy",
    "parse_policy_tests",
    "require_passing",
    "run_policy_tests",
    "what_if",
]
