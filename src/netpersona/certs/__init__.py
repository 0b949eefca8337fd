"""Persona certificates (spec section 8): signed, compact, verified without trusting the sender.

Pure except :mod:`netpersona.certs.keyfiles`, which generates keys and reads/writes key files.
"""

from netpersona.certs.certificate import PersonaCertificate, certificate_claims
from netpersona.certs.issue import ALGORITHM, TOKEN_TYPE, issue_certificate
from netpersona.certs.keys import KeySet, SigningKey
from netpersona.certs.verify import Accepted, Rejected, RejectReason, Verdict, Verifier

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
