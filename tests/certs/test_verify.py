"""Spec section 8: a certificate is accepted only when every rule holds; each no has a reason."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from ipaddress import ip_address

import pytest
from joserfc import jws

from netpersona.certs import (
    Accepted,
    PersonaCertificate,
    Rejected,
    RejectReason,
    Verifier,
    issue_certificate,
)
from netpersona.errors import InvalidDocument
from netpersona.testing.certs import NOW, fixed_key, key_set, make_certificate, signed

SOURCE = ip_address("10.0.0.1")


@pytest.fixture
def verifier() -> Verifier:
    return Verifier(key_set(fixed_key("k1")))


def reason(verdict: Accepted | Rejected) -> RejectReason | None:
    return verdict.reason if isinstance(verdict, Rejected) else None


def test_a_valid_certificate_is_accepted_with_every_field(verifier: Verifier) -> None:
    cert = make_certificate(addresses=("10.0.0.1", "fd00::1"), priority=6, dscp=46)
    verdict = verifier.verify(signed(cert), now=NOW, held=None)
    assert isinstance(verdict, Accepted)
    assert verdict.certificate == cert
    peer = verdict.certificate.peer()
    assert peer.instance == "vm-a"
    assert peer.persona == "api"
    assert peer.labels == (("app", "shop"),)
    assert (peer.priority, peer.dscp) == (6, 46)
    assert [str(a) for a in peer.addresses] == ["10.0.0.1", "fd00::1"]


def test_the_token_fits_a_control_channel_datagram(verifier: Verifier) -> None:
    cert = make_certificate(addresses=("10.0.0.1", "fd00::1"))
    assert len(signed(cert)) < 500


def test_forged_with_another_key_under_our_kid(verifier: Verifier) -> None:
    forger = fixed_key("attacker")
    cert = make_certificate()
    header = {"alg": "Ed25519", "kid": "k1", "typ": "np-cert+jwt"}
    payload = json.dumps({"sub": "vm-a"}).encode()
    token = jws.serialize_compact(header, payload, forger.key, algorithms=["Ed25519"])
    assert reason(verifier.verify(token, now=NOW, held=None)) == (RejectReason.BAD_SIGNATURE)
    forged = issue_certificate(replace(cert, key_id="attacker"), forger)
    forged_as_k1 = forged.replace(forged.split(".")[0], signed(cert).split(".")[0])
    assert reason(verifier.verify(forged_as_k1, now=NOW, held=None)) == (RejectReason.BAD_SIGNATURE)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_tampered_payload(verifier: Verifier) -> None:
    token = signed(make_certificate(persona="api"))
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["pn"] = "admin"
    tampered = ".".join([header, _b64(json.dumps(claims).encode()), signature])
    verdict = verifier.verify(tampered, now=NOW, held=None)
    assert reason(verdict) == RejectReason.BAD_SIGNATURE
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    assert reason(verifier.verify(flipped, now=NOW, held=None)) == (RejectReason.BAD_SIGNATURE)


def test_expired_exactly_at_exp(verifier: Verifier) -> None:
    cert = make_certificate(issued_at=NOW - 100, lifetime=100)
    assert reason(verifier.verify(signed(cert), now=NOW, held=None)) == (RejectReason.EXPIRED)
    assert isinstance(verifier.verify(signed(cert), now=NOW - 1, held=None), Accepted)


def test_issued_in_the_future_beyond_the_skew(verifier: Verifier) -> None:
    cert = make_certificate(issued_at=NOW + 120)
    assert reason(verifier.verify(signed(cert), now=NOW, held=None)) == (RejectReason.NOT_YET_VALID)
    near = make_certificate(issued_at=NOW + 30)
    assert isinstance(verifier.verify(signed(near), now=NOW, held=None), Accepted)


def test_replayed_older_and_duplicate(verifier: Verifier) -> None:
    old = make_certificate(persona="api", seq=4)
    new = make_certificate(persona="web", seq=5)
    assert reason(verifier.verify(signed(old), now=NOW, held=new)) == (RejectReason.STALE)
    assert reason(verifier.verify(signed(new), now=NOW, held=new)) == (RejectReason.DUPLICATE)
    same_seq_other_content = make_certificate(persona="db", seq=5)
    assert reason(verifier.verify(signed(same_seq_other_content), now=NOW, held=new)) == (
        RejectReason.STALE
    )
    verdict = verifier.verify(signed(new), now=NOW, held=old)
    assert isinstance(verdict, Accepted)
    assert verdict.certificate.persona == "web"


def test_a_lower_persona_version_is_newer_when_seq_grows(verifier: Verifier) -> None:
    held = make_certificate(persona="api", seq=7, persona_version=9)
    moved = make_certificate(persona="web", seq=8, persona_version=2)
    assert isinstance(verifier.verify(signed(moved), now=NOW, held=held), Accepted)


def test_unknown_kid(verifier: Verifier) -> None:
    other = fixed_key("k9")
    token = signed(make_certificate(key=other), other)
    assert reason(verifier.verify(token, now=NOW, held=None)) == (RejectReason.UNKNOWN_KEY)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not a token",
        "a.b.c",
        "a.b",
        "é.é.é",
        "x" * 5000,
    ],
)
def test_malformed_tokens(verifier: Verifier, token: str) -> None:
    assert reason(verifier.verify(token, now=NOW, held=None)) == (RejectReason.MALFORMED)


def test_alg_none_and_foreign_typ_are_malformed(verifier: Verifier) -> None:
    token = signed(make_certificate())
    _, payload, signature = token.split(".")
    for header in (
        {"alg": "none", "kid": "k1", "typ": "np-cert+jwt"},
        {"alg": "EdDSA", "kid": "k1", "typ": "np-cert+jwt"},
        {"alg": "Ed25519", "kid": "k1", "typ": "JWT"},
    ):
        forged = ".".join([_b64(json.dumps(header).encode()), payload, signature])
        assert reason(verifier.verify(forged, now=NOW, held=None)) == (RejectReason.MALFORMED)


def test_validly_signed_but_malformed_claims(verifier: Verifier) -> None:
    header = {"alg": "Ed25519", "kid": "k1", "typ": "np-cert+jwt"}
    claims = {"sub": "vm-a", "adr": ["10.0.0.1"], "pr": 9}
    token = jws.serialize_compact(
        header, json.dumps(claims).encode(), fixed_key("k1").key, algorithms=["Ed25519"]
    )
    verdict = verifier.verify(token, now=NOW, held=None)
    assert reason(verdict) == RejectReason.MALFORMED
    assert isinstance(verdict, Rejected)
    assert "/pr" in verdict.detail


def test_issuing_refuses_what_no_verifier_would_accept() -> None:
    with pytest.raises(InvalidDocument, match="/pr"):
        signed(make_certificate(priority=9))
    with pytest.raises(InvalidDocument, match="/kid"):
        issue_certificate(make_certificate(), fixed_key("k2"))


def test_rotation_overlap_then_retirement() -> None:
    old, new = fixed_key("2026-01"), fixed_key("2026-02")
    by_old = signed(make_certificate(key=old, seq=1), old)
    by_new = signed(make_certificate(key=new, seq=2), new)
    during = Verifier(key_set(old, new))
    assert isinstance(during.verify(by_old, now=NOW, held=None), Accepted)
    assert isinstance(during.verify(by_new, now=NOW, held=None), Accepted)
    after = Verifier(during.keys.without("2026-01"))
    assert reason(after.verify(by_old, now=NOW, held=None)) == (RejectReason.UNKNOWN_KEY)
    assert isinstance(after.verify(by_new, now=NOW, held=None), Accepted)


def test_certificate_round_trips_through_claims() -> None:
    cert: PersonaCertificate = make_certificate(addresses=("fd00::7",), labels=())
    verdict = Verifier(key_set(fixed_key("k1"))).check(signed(cert), now=NOW)
    assert isinstance(verdict, Accepted)
    assert verdict.certificate == cert
