"""Reachability: can one VM reach another, on which service, and why (pure).

The spec's answer (sections 3-5) from the two VMs' effective personas and what peers selectors
match on; the lab's oracle (:mod:`netpersona.lab.expect`) is this same code, so the answers
here are the ones the lab proves with real packets.
"""

from netpersona.reachability.blast import BlastRadius, blast_radius, persona_edits
from netpersona.reachability.fleet import (
    ConnectivityChange,
    Service,
    connectivity_changes,
    endpoints_of,
    matrix,
    service_named,
    service_verdict,
    services_of,
)
from netpersona.reachability.verdict import (
    Endpoint,
    Reason,
    Traffic,
    Verdict,
    Via,
    can_reach,
    permitted_by,
)

__all__ = [
    "BlastRadius",
    "ConnectivityChange",
    "Endpoint",
    "Reason",
    "Service",
    "Traffic",
    "Verdict",
    "Via",
    "blast_radius",
    "can_reach",
    "connectivity_changes",
    "endpoints_of",
    "matrix",
    "permitted_by",
    "persona_edits",
    "service_named",
    "service_verdict",
    "services_of",
]
