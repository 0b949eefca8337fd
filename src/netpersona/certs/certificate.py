"""The persona certificate (spec section 8): what the service vouches for about one VM.

A certificate travels as a compact JWS (RFC 7515) whose payload is a JWT claims set (RFC 7519).
Registered claims keep their names (``sub``, ``iat``, ``exp``); the others use short names
because every byte crosses the low-bandwidth control channel many times:

    sub  instance id            adr  addresses (list of IPv4/IPv6 strings)
    pn   persona name           pv   persona version
    md   communication_mode     pf   security_profile
    pr   priority 0..7          ds   DSCP in force (0..63), when the persona overrides it
    lb   instance labels        seq  issue sequence for this instance (grows on every issue)
    iat  issued at (s)          exp  expiry (s)

``seq`` decides which of two certificates for one VM is newer. The persona version alone
cannot: a VM that moves from persona ``api`` (version 9) to ``web`` (version 2) gets a lower
version, and a re-issue before expiry keeps the same one. The issuer makes ``seq`` grow for
each instance (a revision counter of the instance record, or issued-at in milliseconds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from netpersona.errors import FieldError
from netpersona.model.labels import check_persona_name
from netpersona.model.persona import CommunicationMode, SecurityProfile
from netpersona.records import Peer, Reader
from netpersona.records.peer import MAX_INSTANCE_ID
from netpersona.records.reading import integer

__all__ = [
    "MAX_ADDRESSES",
    "MAX_INSTANCE_ID",
    "MAX_LABELS",
    "MAX_SEQ",
    "PersonaCertificate",
    "certificate_claims",
    "certificate_from_claims",
]

IPAddress = IPv4Address | IPv6Address

# Bounds that keep one certificate well inside one control-channel datagram.
MAX_ADDRESSES = 8
MAX_LABELS = 16
MAX_SEQ = 2**63 - 1


@dataclass(frozen=True, slots=True)
class PersonaCertificate:
    instance: str
    addresses: tuple[IPAddress, ...]
    persona: str
    persona_version: int
    mode: CommunicationMode
    profile: SecurityProfile
    priority: int
    labels: tuple[tuple[str, str], ...]
    issued_at: int
    expires_at: int
    seq: int
    key_id: str
    dscp: int | None = None

    def expired(self, now: float) -> bool:
        return now >= self.expires_at

    def peer(self) -> Peer:
        """The entry this certificate contributes to a VM's peer view (spec sections 6 and 8)."""
        return Peer(
            instance=self.instance,
            addresses=self.addresses,
            persona=self.persona,
            persona_version=self.persona_version,
            priority=self.priority,
            dscp=self.dscp,
            mode=self.mode,
            profile=self.profile,
            labels=self.labels,
        )


def certificate_claims(cert: PersonaCertificate) -> dict[str, object]:
    """The JWT claims set for ``cert`` (the key id travels in the JWS header, not here)."""
    claims: dict[str, object] = {
        "sub": cert.instance,
        "adr": [str(a) for a in cert.addresses],
        "pn": cert.persona,
        "pv": cert.persona_version,
        "md": cert.mode.value,
        "pf": cert.profile.value,
        "pr": cert.priority,
        "lb": dict(cert.labels),
        "iat": cert.issued_at,
        "exp": cert.expires_at,
        "seq": cert.seq,
    }
    if cert.dscp is not None:
        claims["ds"] = cert.dscp
    return claims


_CLAIMS = ("sub", "adr", "pn", "pv", "md", "pf", "pr", "lb", "iat", "exp", "seq", "ds")


def _instance(raw: Any) -> str | None:
    return raw if isinstance(raw, str) and 1 <= len(raw) <= MAX_INSTANCE_ID else None


def _addresses(raw: Any) -> list[Any] | None:
    return raw if isinstance(raw, list) and 1 <= len(raw) <= MAX_ADDRESSES else None


def _address(raw: Any) -> IPAddress | None:
    return ip_address(raw) if isinstance(raw, str) else None


def _persona(raw: Any) -> str | None:
    return raw if check_persona_name(raw) is None else None


def certificate_from_claims(
    claims: Mapping[str, Any], key_id: str
) -> PersonaCertificate | list[FieldError]:
    """Claims -> certificate, or every problem found (each naming its claim)."""
    reader = Reader()
    reader.mapping(claims, "", "a claims set", _CLAIMS)
    times = integer(0, MAX_SEQ)
    addresses: tuple[IPAddress, ...] = ()
    if reader.value(claims, "adr", "", _addresses, "a list of 1-8 addresses") is not None:
        addresses = reader.items(claims, "adr", "", _address, "an IP address")
    fields: dict[str, Any] = {
        "instance": reader.value(claims, "sub", "", _instance, "an instance id (1-128 chars)"),
        "addresses": addresses,
        "persona": reader.value(claims, "pn", "", _persona, "a persona name"),
        "persona_version": reader.value(claims, "pv", "", times, "a persona version"),
        "mode": reader.value(claims, "md", "", CommunicationMode, "a communication_mode"),
        "profile": reader.value(claims, "pf", "", SecurityProfile, "a security_profile"),
        "priority": reader.value(claims, "pr", "", integer(0, 7), "a priority 0..7"),
        "dscp": reader.optional(claims, "ds", "", integer(0, 63), "a DSCP 0..63"),
        "labels": reader.labels(claims, "lb", "", MAX_LABELS),
        "issued_at": reader.value(claims, "iat", "", times, "a time in seconds"),
        "expires_at": reader.value(claims, "exp", "", times, "a time in seconds"),
        "seq": reader.value(claims, "seq", "", times, "a sequence 0..2^63-1"),
    }
    issued_at, expires_at = fields["issued_at"], fields["expires_at"]
    if issued_at is not None and expires_at is not None and expires_at <= issued_at:
        reader.fail("/exp", f"{expires_at!r} is not a time after iat")
    if reader.errors:
        return reader.errors
    # Every claim read without a problem: each field holds a value of its type.
    return PersonaCertificate(key_id=key_id, **fields)
