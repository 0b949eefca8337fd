"""Issuing: sign a :class:`PersonaCertificate` into its compact JWS form (the service's part)."""

from __future__ import annotations

import json

from joserfc import jws

from netpersona.certs.certificate import (
    PersonaCertificate,
    certificate_claims,
    certificate_from_claims,
)
from netpersona.certs.keys import SigningKey
from netpersona.errors import FieldError, InvalidDocument

__all__ = ["ALGORITHM", "TOKEN_TYPE", "issue_certificate"]

# The fully specified JOSE name for EdDSA over Ed25519 (RFC 9864), not the polymorphic "EdDSA".
ALGORITHM = "Ed25519"
# Explicit typing (RFC 8725 section 3.11): a JWT signed by the same key for another purpose
# is never mistaken for a persona certificate.
TOKEN_TYPE = "np-cert+jwt"  # noqa: S105 (a media type, not a secret)


def issue_certificate(cert: PersonaCertificate, key: SigningKey) -> str:
    """``cert`` signed with ``key`` as a compact JWS; its ``key_id`` must be ``key.kid``."""
    if cert.key_id != key.kid:
        raise InvalidDocument(
            [
                FieldError(
                    "/kid", f"certificate names key {cert.key_id!r}, signing key is {key.kid!r}"
                )
            ]
        )
    claims = certificate_claims(cert)
    # Issue only what a verifier would accept: the same checks run on both sides.
    parsed = certificate_from_claims(claims, key.kid)
    if isinstance(parsed, list):
        raise InvalidDocument(parsed, source=f"certificate for {cert.instance!r}")
    payload = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": TOKEN_TYPE}
    return jws.serialize_compact(header, payload, key.key, algorithms=[ALGORITHM])
