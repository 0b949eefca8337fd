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
from netpersona.facts import PeerInfo
from netpersona.model.labels import check_label_key, check_label_value, check_persona_name
from netpersona.model.persona import CommunicationMode, SecurityProfile

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
MAX_INSTANCE_ID = 128
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

    def peer_info(self) -> PeerInfo:
        """The entry this certificate contributes to a VM's peer view (spec sections 6 and 8)."""
        return PeerInfo(
            instance=self.instance,
            addresses=self.addresses,
            persona=self.persona,
            labels=self.labels,
            priority=self.priority,
            dscp=self.dscp,
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


def _int(value: object, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def certificate_from_claims(
    claims: Mapping[str, Any], key_id: str
) -> PersonaCertificate | list[FieldError]:
    """Claims -> certificate, or every problem found (each naming its claim)."""
    errors: list[FieldError] = []
    known = {"sub", "adr", "pn", "pv", "md", "pf", "pr", "lb", "iat", "exp", "seq", "ds"}
    for key in claims:
        if key not in known:
            errors.append(FieldError(f"/{key}", f"unknown claim {key!r}"))

    instance = claims.get("sub")
    if not isinstance(instance, str) or not 1 <= len(instance) <= MAX_INSTANCE_ID:
        errors.append(FieldError("/sub", f"{instance!r} is not an instance id (1-128 chars)"))

    addresses: list[IPAddress] = []
    raw_addresses = claims.get("adr")
    if not isinstance(raw_addresses, list) or not 1 <= len(raw_addresses) <= MAX_ADDRESSES:
        errors.append(FieldError("/adr", f"{raw_addresses!r} is not a list of 1-8 addresses"))
    else:
        for index, raw in enumerate(raw_addresses):
            try:
                addresses.append(ip_address(raw if isinstance(raw, str) else "bad"))
            except ValueError:
                errors.append(FieldError(f"/adr/{index}", f"{raw!r} is not an IP address"))

    persona = claims.get("pn")
    if problem := check_persona_name(persona):
        errors.append(FieldError("/pn", problem))
    version = _int(claims.get("pv"), 0, MAX_SEQ)
    if version is None:
        errors.append(FieldError("/pv", f"{claims.get('pv')!r} is not a persona version"))

    mode: CommunicationMode | None = None
    try:
        mode = CommunicationMode(str(claims.get("md")))
    except ValueError:
        errors.append(FieldError("/md", f"{claims.get('md')!r} is not a communication_mode"))
    profile: SecurityProfile | None = None
    try:
        profile = SecurityProfile(str(claims.get("pf")))
    except ValueError:
        errors.append(FieldError("/pf", f"{claims.get('pf')!r} is not a security_profile"))

    priority = _int(claims.get("pr"), 0, 7)
    if priority is None:
        errors.append(FieldError("/pr", f"{claims.get('pr')!r} is not a priority 0..7"))
    dscp = claims.get("ds")
    if dscp is not None and _int(dscp, 0, 63) is None:
        errors.append(FieldError("/ds", f"{dscp!r} is not a DSCP 0..63"))

    labels: list[tuple[str, str]] = []
    raw_labels = claims.get("lb", {})
    if not isinstance(raw_labels, Mapping) or len(raw_labels) > MAX_LABELS:
        errors.append(FieldError("/lb", f"{raw_labels!r} is not a mapping of at most 16 labels"))
    else:
        for key, value in raw_labels.items():
            if problem := check_label_key(key) or check_label_value(value):
                errors.append(FieldError(f"/lb/{key}", problem))
            else:
                labels.append((key, value))

    issued_at = _int(claims.get("iat"), 0, MAX_SEQ)
    expires_at = _int(claims.get("exp"), 0, MAX_SEQ)
    if issued_at is None:
        errors.append(FieldError("/iat", f"{claims.get('iat')!r} is not a time in seconds"))
    if expires_at is None or (issued_at is not None and expires_at <= issued_at):
        errors.append(FieldError("/exp", f"{claims.get('exp')!r} is not a time after iat"))
    seq = _int(claims.get("seq"), 0, MAX_SEQ)
    if seq is None:
        errors.append(FieldError("/seq", f"{claims.get('seq')!r} is not a sequence 0..2^63-1"))

    if (
        errors
        or not isinstance(instance, str)
        or not isinstance(persona, str)
        or version is None
        or mode is None
        or profile is None
        or priority is None
        or issued_at is None
        or expires_at is None
        or seq is None
    ):
        return errors
    return PersonaCertificate(
        instance=instance,
        addresses=tuple(addresses),
        persona=persona,
        persona_version=version,
        mode=mode,
        profile=profile,
        priority=priority,
        labels=tuple(sorted(labels)),
        issued_at=issued_at,
        expires_at=expires_at,
        seq=seq,
        key_id=key_id,
        dscp=dscp if isinstance(dscp, int) else None,
    )
