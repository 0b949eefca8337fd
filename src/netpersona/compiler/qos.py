"""Egress scheduling (spec section 6): an HTB tree per uplink when any egress key is set.

    6e70:   htb root qdisc, unclassified traffic -> 6e70:20
    6e70:1  rate = ceil = persona ceiling + CONTROL_RATE
    6e70:10 control traffic (metadata service, control channel), prio 0, guaranteed CONTROL_RATE,
            may borrow up to the whole root: the persona class can never starve it
    6e70:20 everything else: rate = egress_rate, ceil = egress_ceil (only one given: a hard cap)

Control packets reach 6e70:10 by skb->priority, set in the ``mark_out`` nftables chain: HTB
classifies a packet whose priority names one of its classes straight into it (tc-htb(8)), so no
tc filter is needed.
"""

from __future__ import annotations

from netpersona.compiler.plan import (
    CONTROL_CLASS,
    PERSONA_CLASS,
    ROOT_CLASS,
    TC_HANDLE,
    TcClass,
    TcQdisc,
)
from netpersona.facts import HostFacts
from netpersona.model.persona import Persona

__all__ = ["CONTROL_RATE", "compile_tc"]

# Enough for the metadata long-poll and the control channel (whose own default cap is far
# lower); guaranteed, so a saturated persona class never delays a persona change.
CONTROL_RATE = 1_000_000


def compile_tc(persona: Persona, facts: HostFacts) -> tuple[TcQdisc | TcClass, ...]:
    qos = persona.qos
    if not qos.shapes_egress:
        return ()
    rate = qos.egress_rate if qos.egress_rate is not None else qos.egress_ceil
    ceil = qos.egress_ceil if qos.egress_ceil is not None else qos.egress_rate
    assert rate is not None
    assert ceil is not None
    root = ceil + CONTROL_RATE
    ops: list[TcQdisc | TcClass] = []
    for uplink in sorted(facts.uplinks, key=lambda u: u.name):
        dev = uplink.name
        ops += [
            TcQdisc(dev=dev, handle=TC_HANDLE, parent="root", kind="htb", default_class="20"),
            TcClass(
                dev=dev,
                classid=ROOT_CLASS,
                parent=TC_HANDLE,
                rate=root,
                ceil=root,
                burst=None,
                prio=0,
            ),
            TcClass(
                dev=dev,
                classid=CONTROL_CLASS,
                parent=ROOT_CLASS,
                rate=CONTROL_RATE,
                ceil=root,
                burst=None,
                prio=0,
            ),
            TcClass(
                dev=dev,
                classid=PERSONA_CLASS,
                parent=ROOT_CLASS,
                rate=rate,
                ceil=ceil,
                burst=qos.burst,
                prio=1,
            ),
        ]
    return tuple(ops)
