"""The records every part of netpersona shares: an instance, a persona, a peer.

Each is a frozen value with one JSON form (``to_json`` / ``from_json``), spoken alike by the
metadata service, the store, the policy engine, the certificates, the compiler and the CLI.
Pure: imports only the model and the error tree.
"""

from netpersona.records.instance import Instance, Interface, Tier
from netpersona.records.peer import Peer
from netpersona.records.persona import (
    EffectivePersona,
    PersonaVersion,
    canonical_json,
    digest_of,
    unassigned_json,
)
from netpersona.records.reading import Reader

__all__ = [
    "EffectivePersona",
    "Instance",
    "Interface",
    "Peer",
    "PersonaVersion",
    "Reader",
    "Tier",
    "canonical_json",
    "digest_of",
    "unassigned_json",
]
