"""Packet probes with real sockets: does a TCP, UDP, ICMP, broadcast or multicast probe from
one network namespace reach another?

Receivers run in the target namespace (``ip netns exec NS python -m netpersona.probe listen``)
and print one JSON line per probe received, with the DSCP it arrived with; senders
(``python -m netpersona.probe send PROBES``) print what they saw. :mod:`netpersona.probe.runner`
drives both from Python.
"""

from netpersona.probe.listen import Group, listen
from netpersona.probe.send import run_probes

__all__ = ["Group", "listen", "run_probes"]
