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

__all__ = ["CONTROL_RATE", "HTB_LONGEST_BURST_USEC", "compile_tc", "htb_burst", "whole_bytes"]

# Enough for the metadata long-poll and the control channel (whose own default cap is far
# lower); guaranteed, so a saturated persona class never delays a persona change.
CONTROL_RATE = 1_000_000
# HTB keeps a burst as the time it takes at the class rate, in 32-bit ticks of 64 ns, and tc
# converts through whole microseconds: 2^32 ticks is 274877906 us (about 275 s). A longer
# burst wraps around to a small, wrong one.
HTB_LONGEST_BURST_USEC = 274_877_906


def whole_bytes(bits_per_second: int) -> int:
    """The rate as the kernel holds it: tc(8) turns bits/s into whole bytes/s, rounding down."""
    return bits_per_second // 8 * 8


def htb_burst(burst: int | None, rate: int) -> int | None:
    """``burst`` (bytes) held to the longest an HTB class at ``rate`` (bits/s) can keep."""
    if burst is None:
        return None
    return min(burst, HTB_LONGEST_BURST_USEC * (rate // 8) // 1_000_000)


def compile_tc(persona: Persona, facts: HostFacts) -> tuple[TcQdisc | TcClass, ...]:
    qos = persona.qos
    if not qos.shapes_egress:
        return ()
    wanted_rate = qos.egress_rate if qos.egress_rate is not None else qos.egress_ceil
    wanted_ceil = qos.egress_ceil if qos.egress_ceil is not None else qos.egress_rate
    assert wanted_rate is not None
    assert wanted_ceil is not None
    rate, ceil = whole_bytes(wanted_rate), whole_bytes(wanted_ceil)
    root = ceil + CONTROL_RATE
    burst = htb_burst(qos.burst, rate)
    ops: list[TcQdisc | TcClass] = []
    for uplink in sorted(facts.uplinks, key=lambda u: u.name):
        dev = uplink.name
        ops += [
            TcQdisc(dev=dev, handle=TC_HANDLE, parent="root", kind="htb", default_class="20"),
            TcClass(dev, ROOT_CLASS, TC_HANDLE, rate=root, ceil=root, burst=None, prio=0),
            TcClass(dev, CONTROL_CLASS, ROOT_CLASS, CONTROL_RATE, ceil=root, burst=None, prio=0),
            TcClass(dev, PERSONA_CLASS, ROOT_CLASS, rate=rate, ceil=ceil, burst=burst, prio=1),
        ]
    return tuple(ops)
