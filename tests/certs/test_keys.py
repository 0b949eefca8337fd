"""The public key set (JWKS) VMs fetch, and the key files the service keeps."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from netpersona.certs import Accepted, KeySet, SigningKey, Verifier
from netpersona.certs.keyfiles import (
    generate_signing_key,
    load_key_set,
    load_signing_key,
    save_key_set,
    save_signing_key,
)
from netpersona.errors import InvalidDocument
from netpersona.testing.certs import NOW, fixed_key, key_set, make_certificate, signed


def test_jwks_round_trip_keeps_only_public_parts() -> None:
    keys = key_set(fixed_key("a"), fixed_key("b"))
    document = keys.to_jwks()
    assert [k["kid"] for k in document["keys"]] == ["a", "b"]
    assert all("d" not in k and k["crv"] == "Ed25519" for k in document["keys"])
    again = KeySet.from_jwks(json.loads(json.dumps(document)))
    assert again.key_ids == ("a", "b")


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ({}, "/keys"),
        ({"keys": []}, "/keys"),
        ({"keys": [{"kty": "RSA", "kid": "r", "n": "x", "e": "AQAB"}]}, "Ed25519"),
        ({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AA"}]}, "/keys/0/kid"),
    ],
)
def test_bad_jwks_is_refused_with_the_place(document: dict[str, object], complaint: str) -> None:
    with pytest.raises(InvalidDocument, match=complaint):
        KeySet.from_jwks(document)


def test_a_private_key_never_enters_the_public_set() -> None:
    with pytest.raises(InvalidDocument, match="private"):
        KeySet.from_jwks({"keys": [fixed_key("a").private_jwk()]})


def test_the_same_kid_twice_is_refused() -> None:
    public = fixed_key("a").public_key().as_dict()
    with pytest.raises(InvalidDocument, match="twice"):
        KeySet.from_jwks({"keys": [public, public]})
    with pytest.raises(InvalidDocument, match="already"):
        key_set(fixed_key("a")).with_key(fixed_key("a").public_key())


def test_key_files_round_trip_and_stay_private(tmp_path: Path) -> None:
    key = generate_signing_key()
    assert len(key.kid) == 16
    save_signing_key(key, tmp_path / "signing.jwk")
    mode = stat.S_IMODE((tmp_path / "signing.jwk").stat().st_mode)
    assert mode == 0o600
    loaded = load_signing_key(tmp_path / "signing.jwk")
    save_key_set(KeySet().with_key(loaded.public_key()), tmp_path / "jwks.json")
    verifier = Verifier(load_key_set(tmp_path / "jwks.json"))
    cert = make_certificate(key=loaded)
    assert isinstance(verifier.check(signed(cert, loaded), now=NOW), Accepted)


def test_unreadable_key_files_name_the_path(tmp_path: Path) -> None:
    (tmp_path / "bad.jwk").write_text("{not json")
    with pytest.raises(InvalidDocument, match=r"bad\.jwk"):
        load_signing_key(tmp_path / "bad.jwk")
    with pytest.raises(InvalidDocument, match="private part"):
        SigningKey.from_jwk(fixed_key("a").public_key().as_dict())
