"""The edge of :mod:`netpersona.certs`: make Ed25519 keys and keep them in files.

A private key is a JWK file written with mode 0600; a public key set is a JWKS file. Key
material comes from the operating system's random source (through ``cryptography``).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from joserfc.jwk import OKPKey

from netpersona.certs.keys import KeySet, SigningKey
from netpersona.errors import FieldError, InvalidDocument

__all__ = [
    "generate_signing_key",
    "load_key_set",
    "load_signing_key",
    "save_key_set",
    "save_signing_key",
]


def generate_signing_key(kid: str | None = None) -> SigningKey:
    """A fresh Ed25519 key; ``kid`` defaults to a random 8-byte hex id."""
    kid = kid or secrets.token_hex(8)
    return SigningKey(OKPKey.generate_key("Ed25519", parameters={"kid": kid}))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidDocument(
            [FieldError("", f"cannot read {path}: {exc}")], source=str(path)
        ) from None


def save_signing_key(key: SigningKey, path: Path) -> None:
    """Write the private JWK, readable by the owner only (created 0600, never widened)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(key.private_jwk(), out)


def load_signing_key(path: Path) -> SigningKey:
    return SigningKey.from_jwk(_read_json(path))


def save_key_set(keys: KeySet, path: Path) -> None:
    path.write_text(json.dumps(keys.to_jwks(), indent=2) + "\n")


def load_key_set(path: Path) -> KeySet:
    return KeySet.from_jwks(_read_json(path))
