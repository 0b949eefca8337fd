"""Certificate keys: the service's Ed25519 signing key and the public key set VMs verify with.

The public set is served as a JWKS (RFC 7517 section 5); each key carries a ``kid`` and every
certificate names the key that signed it in its JWS header, so the verifier picks the key by
``kid`` and never tries keys in turn.

Rotation without a fleet outage: (1) add the new public key to the set and let the set reach
the VMs while the old key still signs; (2) sign with the new key; (3) once every certificate
signed by the old key has expired (one certificate lifetime), drop the old key from the set.
During the overlap both keys are in the set and certificates from either verify.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from netpersona.errors import FieldError, InvalidDocument

__all__ = ["MAX_KEYS", "KeySet", "SigningKey", "public_key_from_jwk"]

MAX_KEYS = 8


def public_key_from_jwk(jwk: Mapping[str, Any], at: str = "") -> OKPKey:
    """One public JWK -> an Ed25519 key, or :class:`InvalidDocument` naming what is wrong."""
    if not isinstance(jwk, Mapping):
        raise InvalidDocument([FieldError(at, f"{jwk!r} is not a JWK object")])
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not 1 <= len(kid) <= 64:
        raise InvalidDocument([FieldError(f"{at}/kid", f"{kid!r} is not a key id (1-64 chars)")])
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise InvalidDocument(
            [FieldError(at, f"key {kid!r} is not an Ed25519 key (kty OKP, crv Ed25519)")]
        )
    if "d" in jwk:
        raise InvalidDocument([FieldError(f"{at}/d", f"key {kid!r} holds a private part")])
    try:
        return OKPKey.import_key(dict(jwk))
    except (JoseError, ValueError, TypeError) as exc:
        raise InvalidDocument([FieldError(at, f"key {kid!r}: {exc}")]) from None


@dataclass(frozen=True, slots=True, eq=False)
class KeySet:
    """The public keys certificates may be signed with, by ``kid`` (at most :data:`MAX_KEYS`)."""

    keys: tuple[tuple[str, OKPKey], ...] = ()

    @classmethod
    def from_jwks(cls, document: Mapping[str, Any]) -> KeySet:
        raw = document.get("keys") if isinstance(document, Mapping) else None
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_KEYS:
            raise InvalidDocument([FieldError("/keys", f"expected a list of 1-{MAX_KEYS} keys")])
        keys: list[tuple[str, OKPKey]] = []
        for index, jwk in enumerate(raw):
            key = public_key_from_jwk(jwk, f"/keys/{index}")
            if key.kid in dict(keys):
                raise InvalidDocument([FieldError(f"/keys/{index}/kid", f"{key.kid!r} twice")])
            keys.append((str(key.kid), key))
        return cls(tuple(keys))

    def to_jwks(self) -> dict[str, list[dict[str, Any]]]:
        return {"keys": [dict(key.as_dict(private=False)) for _, key in self.keys]}

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(kid for kid, _ in self.keys)

    def get(self, kid: str) -> OKPKey | None:
        for have, key in self.keys:
            if have == kid:
                return key
        return None

    def with_key(self, key: OKPKey) -> KeySet:
        """The set with ``key`` added (the first step of a rotation)."""
        public = public_key_from_jwk(key.as_dict(private=False))
        if self.get(str(public.kid)) is not None:
            raise InvalidDocument([FieldError("/kid", f"{public.kid!r} is already in the set")])
        if len(self.keys) >= MAX_KEYS:
            raise InvalidDocument([FieldError("/keys", f"at most {MAX_KEYS} keys")])
        return KeySet((*self.keys, (str(public.kid), public)))

    def without(self, kid: str) -> KeySet:
        """The set with ``kid`` retired (the last step of a rotation)."""
        return KeySet(tuple((have, key) for have, key in self.keys if have != kid))


@dataclass(frozen=True, slots=True, eq=False)
class SigningKey:
    """The service's private Ed25519 key and its ``kid``."""

    key: OKPKey

    @property
    def kid(self) -> str:
        return str(self.key.kid)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> SigningKey:
        kid = jwk.get("kid") if isinstance(jwk, Mapping) else None
        if not isinstance(jwk, Mapping) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            raise InvalidDocument([FieldError("", f"key {kid!r} is not an Ed25519 JWK")])
        if not isinstance(kid, str) or not 1 <= len(kid) <= 64:
            raise InvalidDocument([FieldError("/kid", f"{kid!r} is not a key id (1-64 chars)")])
        if "d" not in jwk:
            raise InvalidDocument([FieldError("/d", f"key {kid!r} has no private part")])
        try:
            return cls(OKPKey.import_key(dict(jwk)))
        except (JoseError, ValueError, TypeError) as exc:
            raise InvalidDocument([FieldError("", f"key {kid!r}: {exc}")]) from None

    @classmethod
    def from_seed(cls, seed: bytes, kid: str) -> SigningKey:
        """The Ed25519 key whose 32-byte private seed is ``seed`` (RFC 8032 section 5.1.5).

        Deterministic: for tests and the simulator, or with a seed from a secure random source.
        """
        if len(seed) != 32:
            raise InvalidDocument(
                [FieldError("/d", f"an Ed25519 seed is 32 bytes, not {len(seed)}")]
            )
        private = Ed25519PrivateKey.from_private_bytes(seed)
        return cls(OKPKey.import_key(private, parameters={"kid": kid}))

    def private_jwk(self) -> dict[str, Any]:
        return dict(self.key.as_dict(private=True))

    def public_key(self) -> OKPKey:
        return public_key_from_jwk(self.key.as_dict(private=False))
