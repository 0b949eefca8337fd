"""Persona certificates (spec section 8): signed, compact, verified without trusting the sender.

Pure except :mod:`netpersona.certs.keyfiles`, which generates keys and reads/writes key files.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from netpersona.certs.certificate import PersonaCertificate, certificate_claims
    from netpersona.certs.issue import ALGORITHM, TOKEN_TYPE, issue_certificate
    from netpersona.certs.keys import KeySet, SigningKey
    from netpersona.certs.verify import Accepted, Rejected, RejectReason, Verdict, Verifier

# Each name's module, imported on first use: the certificate record alone must not load the
# JOSE and cryptography packages (a VM agent without the control channel never signs or
# verifies anything).
_HOMES = {
    **dict.fromkeys(("PersonaCertificate", "certificate_claims"), "certificate"),
    **dict.fromkeys(("ALGORITHM", "TOKEN_TYPE", "issue_certificate"), "issue"),
    **dict.fromkeys(("KeySet", "SigningKey"), "keys"),
    **dict.fromkeys(("Accepted", "Rejected", "RejectReason", "Verdict", "Verifier"), "verify"),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"netpersona.certs.{home}"), name)


__all__ = [
    "ALGORITHM",
    "TOKEN_TYPE",
    "Accepted",
    "KeySet",
    "PersonaCertificate",
    "RejectReason",
    "Rejected",
    "SigningKey",
    "Verdict",
    "Verifier",
    "certificate_claims",
    "issue_certificate",
]
