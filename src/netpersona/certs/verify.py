"""Verifying persona certificates exactly as spec section 8 says, with a typed reason for no.

Pure: the key set and the time are passed in. A certificate is accepted only if its signature
verifies under the key its ``kid`` names, it has not expired, it is newer (higher ``seq``) than
the one held for that VM. Who sent it does not matter: a certificate is self-authenticating and
may be relayed by any VM (amended section 8). Checks run in a fixed order, cheapest-to-fake
last, so a reason never depends on what the attacker chose to send first:
format -> key -> signature -> claims -> time -> newness.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from joserfc import jws
from joserfc.errors import JoseError

from netpersona.certs.certificate import PersonaCertificate, certificate_from_claims
from netpersona.certs.issue import ALGORITHM, TOKEN_TYPE
from netpersona.certs.keys import KeySet

__all__ = [
    "DEFAULT_CLOCK_SKEW",
    "MAX_TOKEN_BYTES",
    "Accepted",
    "Rejected",
    "RejectReason",
    "Verdict",
    "Verifier",
]

# A certificate must fit one control-channel datagram with room for the message header.
MAX_TOKEN_BYTES = 1100
# How far in the future ``iat`` may lie before the certificate is refused (VM clocks drift).
DEFAULT_CLOCK_SKEW = 60


class RejectReason(StrEnum):
    MALFORMED = "malformed"  # not a compact JWS of ours, or its claims break the format
    UNKNOWN_KEY = "unknown_key"  # ``kid`` is not in the key set (retired, or never ours)
    BAD_SIGNATURE = "bad_signature"  # forged with another key, or tampered after signing
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"  # issued further in the future than the clock skew allows
    STALE = "stale"  # replayed or older: seq not above the one held for that VM
    DUPLICATE = "duplicate"  # the very certificate already held (gossip repeats itself)


@dataclass(frozen=True, slots=True)
class Accepted:
    certificate: PersonaCertificate
    token: str


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: RejectReason
    detail: str
    instance: str | None = None


Verdict = Accepted | Rejected


class Verifier:
    """Pure certificate checks against one key set (replace the verifier to rotate keys)."""

    def __init__(self, keys: KeySet, *, clock_skew: int = DEFAULT_CLOCK_SKEW) -> None:
        self.keys = keys
        self.clock_skew = clock_skew

    def check(self, token: str | bytes, *, now: float) -> Verdict:
        """Format, key, signature, claims and validity time: everything but newness."""
        raw = token.encode("ascii", "replace") if isinstance(token, str) else bytes(token)
        if len(raw) > MAX_TOKEN_BYTES:
            return Rejected(RejectReason.MALFORMED, f"token of {len(raw)} bytes (max 1100)")
        try:
            text = raw.decode("ascii")
            obj = jws.extract_compact(raw)
            header = obj.headers()
        except (JoseError, ValueError, TypeError, UnicodeDecodeError) as exc:
            return Rejected(RejectReason.MALFORMED, f"not a compact JWS: {type(exc).__name__}")
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or header.get("typ") != TOKEN_TYPE:
            return Rejected(
                RejectReason.MALFORMED,
                f"header alg={header.get('alg')!r} typ={header.get('typ')!r} "
                f"(expected {ALGORITHM}, {TOKEN_TYPE})",
            )
        if not isinstance(kid, str):
            return Rejected(RejectReason.MALFORMED, f"header kid {kid!r} is not a key id")
        key = self.keys.get(kid)
        if key is None:
            return Rejected(RejectReason.UNKNOWN_KEY, f"kid {kid!r} is not in the key set")
        try:
            valid = jws.validate_compact(obj, key, algorithms=[ALGORITHM])
        except (JoseError, ValueError, TypeError) as exc:
            return Rejected(RejectReason.BAD_SIGNATURE, f"kid {kid!r}: {type(exc).__name__}")
        if not valid:
            return Rejected(RejectReason.BAD_SIGNATURE, f"signature does not verify (kid {kid!r})")
        try:
            claims = json.loads(obj.payload or b"")
        except ValueError:
            return Rejected(RejectReason.MALFORMED, "payload is not JSON")
        if not isinstance(claims, dict):
            return Rejected(RejectReason.MALFORMED, "payload is not a JSON object")
        parsed = certificate_from_claims(claims, kid)
        if isinstance(parsed, list):
            return Rejected(RejectReason.MALFORMED, "; ".join(str(e) for e in parsed))
        cert = parsed
        if cert.expired(now):
            return Rejected(
                RejectReason.EXPIRED, f"expired at {cert.expires_at} (now {now:.0f})", cert.instance
            )
        if cert.issued_at > now + self.clock_skew:
            return Rejected(
                RejectReason.NOT_YET_VALID,
                f"issued at {cert.issued_at}, after now {now:.0f} + skew {self.clock_skew}",
                cert.instance,
            )
        return Accepted(cert, text)

    def verify(
        self,
        token: str | bytes,
        *,
        now: float,
        held: PersonaCertificate | None,
    ) -> Verdict:
        """Spec section 8 in full: signature, expiry and newness. ``held`` is the certificate
        this VM already holds for the same instance (if any). Who sent the datagram does not
        matter: a certificate is self-authenticating, may be relayed by any VM, and its
        receiver uses only the addresses it names."""
        verdict = self.check(token, now=now)
        if isinstance(verdict, Rejected):
            return verdict
        return self.newer_than(verdict, held)

    @staticmethod
    def newer_than(verdict: Accepted, held: PersonaCertificate | None) -> Verdict:
        """The newness rule alone: accepted only above ``held.seq``."""
        cert = verdict.certificate
        if held is None or cert.seq > held.seq:
            return verdict
        if cert == held:
            return Rejected(RejectReason.DUPLICATE, f"seq {cert.seq} already held", cert.instance)
        return Rejected(
            RejectReason.STALE, f"seq {cert.seq} is not above held {held.seq}", cert.instance
        )
