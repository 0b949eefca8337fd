"""The applier: the only code that changes the kernel (nftables, tc, routes, sysctls, links)."""

from netpersona.dataplane.apply import Applier, ApplyReport
from netpersona.dataplane.kernel import MUTATIONS, Kernel, LinuxKernel
from netpersona.dataplane.snapshot import KernelSnapshot, Target, read_snapshot
from netpersona.dataplane.state import AppliedState, Originals, StateStore
from netpersona.errors import ApplyRolledBack

__all__ = [
    "MUTATIONS",
    "AppliedState",
    "Applier",
    "ApplyReport",
    "ApplyRolledBack",
    "Kernel",
    "KernelSnapshot",
    "LinuxKernel",
    "Originals",
    "StateStore",
    "Target",
    "read_snapshot",
]
