"""The pure compiler: persona + host facts -> :class:`Plan` (spec sections 3-7). No I/O."""

from __future__ import annotations

from netpersona.compiler.host import compile_links, compile_sysctls
from netpersona.compiler.peers import resolve_peer_sets
from netpersona.compiler.plan import PeerSets, Plan, replace_table_batch
from netpersona.compiler.qos import compile_tc
from netpersona.compiler.routing import compile_routing
from netpersona.compiler.ruleset import DROP_COUNTERS, compile_ruleset
from netpersona.facts import HostFacts
from netpersona.model.persona import Persona

__all__ = [
    "DROP_COUNTERS",
    "PeerSets",
    "Plan",
    "compile_plan",
    "replace_table_batch",
    "resolve_peer_sets",
]


def compile_plan(persona: Persona, facts: HostFacts, *, peer_sets: PeerSets | None = None) -> Plan:
    """Everything ``persona`` asks of the VM described by ``facts``. Same input, same plan.

    ``peer_sets``, if given, are ``resolve_peer_sets(persona, facts)`` already resolved (the
    incremental compiler keeps them current itself)."""
    routes, rules = compile_routing(persona, facts)
    return Plan(
        nftables=tuple(compile_ruleset(persona, facts)),
        peer_sets=resolve_peer_sets(persona, facts) if peer_sets is None else peer_sets,
        tc=compile_tc(persona, facts),
        routes=routes,
        rules=rules,
        sysctls=compile_sysctls(persona, facts),
        links=compile_links(persona, facts),
    )
