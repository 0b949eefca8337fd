"""Persona certificates for tests and labs: deterministic keys and a certificate factory."""

from __future__ import annotations

from dataclasses import replace
from hashlib import blake2b
from ipaddress import IPv4Address, IPv6Address, ip_address

from netpersona.certs.certificate import PersonaCertificate
from netpersona.certs.issue import issue_certificate
from netpersona.certs.keys import KeySet, SigningKey
from netpersona.model.persona import CommunicationMode, SecurityProfile

__all__ = ["NOW", "key_set", "make_certificate", "signed", "fixed_key"]

# A fixed "now" for pure tests (2023-11-14T22:13:20Z).
NOW = 1_700_000_000


def fixed_key(name: str = "k1") -> SigningKey:
    """The same Ed25519 key every time for a given name (its ``kid`` is the name)."""
    return SigningKey.from_seed(blake2b(name.encode(), digest_size=32).digest(), name)


def key_set(*keys: SigningKey) -> KeySet:
    keys_ = KeySet()
    for key in keys:
        keys_ = keys_.with_key(key.public_key())
    return keys_


def make_certificate(
    instance: str = "vm-a",
    addresses: tuple[str | IPv4Address | IPv6Address, ...] = ("10.0.0.1",),
    *,
    persona: str = "api",
    seq: int = 1,
    priority: int = 3,
    labels: tuple[tuple[str, str], ...] = (("app", "shop"),),
    issued_at: int = NOW - 10,
    lifetime: int = 3600,
    key: SigningKey | None = None,
    **changes: object,
) -> PersonaCertificate:
    cert = PersonaCertificate(
        instance=instance,
        addresses=tuple(ip_address(a) for a in addresses),
        persona=persona,
        persona_version=seq,
        mode=CommunicationMode.RESTRICTED,
        profile=SecurityProfile.HIGH,
        priority=priority,
        labels=labels,
        issued_at=issued_at,
        expires_at=issued_at + lifetime,
        seq=seq,
        key_id=(key or fixed_key()).kid,
    )
    return replace(cert, **changes)  # type: ignore[arg-type]


def signed(cert: PersonaCertificate, key: SigningKey | None = None) -> str:
    """``cert`` issued with ``key`` (default: :func:`fixed_key`)."""
    return issue_certificate(cert, key or fixed_key())
