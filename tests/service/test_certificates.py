"""Persona certificates and the key set, as VMs get them (spec section 8; docs/metadata-api.md)."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import httpx
import pytest

from netpersona.certs import Accepted, KeySet, PersonaCertificate, Rejected, RejectReason, Verifier
from netpersona.model.persona import CommunicationMode, SecurityProfile
from netpersona.records import Peer
from netpersona.service import create_app
from netpersona.service import fleet as fleet_module
from netpersona.service.auth import TOKEN_HEADER
from netpersona.service.keyring import KEY_FILE, KeyFile
from netpersona.store import Role, SqliteStore
from tests.service.conftest import Service, persona_doc
from tests.service.test_policy import FLEET, _set_context, _setup
from tests.service.test_watch import until_waiting, woken_by

pytestmark = pytest.mark.anyio

CERT = "/v1/instance/certificate"
KEYS = "/v1/keys"
LIFETIME = 30
START = 1_800_000_000.0


@dataclass
class Clock:
    now: float = START

    def __call__(self) -> float:
        return self.now


@dataclass
class CertService(Service):
    clock: Clock
    keys: KeyFile

    @property
    def fleet(self) -> Any:
        return self.app.state.netpersona.fleet

    async def certificate(self, address: str) -> dict[str, Any]:
        async with await self.vm(address) as vm:
            response = await vm.get(CERT)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def key_set(self, address: str) -> KeySet:
        async with await self.vm(address) as vm:
            response = await vm.get(KEYS)
        assert response.status_code == 200, response.text
        return KeySet.from_jwks(response.json())

    async def verify(self, address: str, token: str) -> PersonaCertificate:
        verdict = Verifier(await self.key_set(address)).verify(token, now=self.clock.now, held=None)
        assert isinstance(verdict, Accepted), verdict
        return verdict.certificate


def _make(
    tmp_path: Path, store: SqliteStore, secrets: dict[Role, str], clock: Clock
) -> CertService:
    keys = KeyFile(tmp_path / KEY_FILE)
    keys.load_or_create(clock.now)
    app = create_app(store, clock=clock, keys=keys, certificate_lifetime=LIFETIME)
    return CertService(app, store, secrets, clock, keys)


@pytest.fixture
def certified(tmp_path: Path) -> Iterator[CertService]:
    store = SqliteStore(tmp_path / "netpersona.db")
    secrets = {role: store.create_token(f"test-{role.value}", role, "test")[1] for role in Role}
    try:
        yield _make(tmp_path, store, secrets, Clock())
    finally:
        store.close()


async def test_a_vm_gets_a_certificate_binding_its_persona_that_verifies_with_the_keys(
    certified: CertService,
) -> None:
    doc = persona_doc(5, mode="restricted", peers=[{"persona": "api"}])
    doc["network_persona"]["qos_parameters"] = {"dscp": 46}
    await certified.put_persona("db", doc)
    async with certified.admin() as admin:
        made = await admin.post(
            "/v1/admin/instances",
            json={"id": "d1", "addresses": ["10.0.0.2", "fd00::2"], "labels": {"app": "db"}},
        )
        assert made.status_code == 201, made.text
    await certified.add_instance("bare", "10.0.0.9")
    await certified.pin("d1", "db")

    body = await certified.certificate("10.0.0.2")
    assert body["expires_at"] == int(START) + LIFETIME
    cert = await certified.verify("10.0.0.2", body["certificate"])
    assert cert.seq == body["seq"]
    assert (cert.instance, cert.persona, cert.persona_version) == ("d1", "db", 1)
    assert cert.addresses == (ip_address("10.0.0.2"), ip_address("fd00::2"))
    assert (cert.mode, cert.profile, cert.priority, cert.dscp) == (
        CommunicationMode.RESTRICTED,
        SecurityProfile.MEDIUM,
        5,
        46,
    )
    assert cert.labels == (("app", "db"),)
    assert (cert.issued_at, cert.expires_at) == (int(START), int(START) + LIFETIME)
    # Served on the other address too; its receivers use only the addresses it names.
    assert (await certified.verify("fd00::2", body["certificate"])).addresses == cert.addresses

    # Nothing changed: the same bytes, a 304 on If-None-Match.
    async with await certified.vm("10.0.0.2") as vm:
        first = await vm.get(CERT)
        again = await vm.get(CERT, headers={"If-None-Match": first.headers["etag"]})
    assert first.json() == body
    assert again.status_code == 304

    # An instance with no effective persona has no certificate.
    assert await certified.certificate("10.0.0.9") == {
        "certificate": None,
        "expires_at": None,
        "seq": None,
    }
    # The key set holds public keys only.
    async with await certified.vm("10.0.0.9") as vm:
        jwks = (await vm.get(KEYS)).json()
    assert len(jwks["keys"]) == 1
    assert "d" not in jwks["keys"][0]


async def test_a_certificate_and_the_peer_view_give_the_same_peer(
    certified: CertService,
) -> None:
    # What a VM learns of a peer over the control channel is what the service shows it.
    api = persona_doc(5, mode="restricted", peers=[{"persona": "db"}])
    api["network_persona"]["qos_parameters"] = {"dscp": 46}
    await certified.put_persona("api", api)
    await certified.put_persona("db", persona_doc(6, peers=[{"persona": "api"}]))
    await certified.add_instance("a1", "10.0.0.1", {"app": "api"})
    await certified.add_instance("d1", "10.0.0.2")
    await certified.pin("a1", "api")
    await certified.pin("d1", "db")
    body = await certified.certificate("10.0.0.1")
    learned = (await certified.verify("10.0.0.1", body["certificate"])).peer()
    async with await certified.vm("10.0.0.2") as vm:
        served = [Peer.from_json(p) for p in (await vm.get("/v1/instance/peers")).json()["peers"]]
    assert served == [learned]
    assert (learned.persona, learned.priority, learned.dscp) == ("api", 5, 46)
    assert learned.mode is CommunicationMode.RESTRICTED


async def test_no_vm_can_get_another_vms_certificate(certified: CertService) -> None:
    await certified.put_persona("web", persona_doc(2))
    for n in (1, 2):
        await certified.add_instance(f"vm{n}", f"10.0.0.{n}")
        await certified.pin(f"vm{n}", "web")
    mine = await certified.certificate("10.0.0.2")
    assert (await certified.verify("10.0.0.2", mine["certificate"])).instance == "vm2"
    async with await certified.vm("10.0.0.2") as vm2, await certified.vm("10.0.0.1") as vm1:
        # No parameter names another instance; a query string is ignored.
        other = await vm2.get(CERT, params={"instance": "vm1", "id": "vm1"})
        assert other.json() == mine
        # vm1's token from vm2's address, a forwarded header, no token, an unknown address.
        stolen = await vm2.get(CERT, headers={TOKEN_HEADER: vm1.headers[TOKEN_HEADER]})
        assert stolen.status_code == 401
        forwarded = await vm2.get(CERT, headers={"X-Forwarded-For": "10.0.0.1"})
        assert forwarded.status_code in (400, 403)
        assert "certificate" not in forwarded.text
    async with certified.anonymous("10.0.0.1") as anonymous:
        assert (await anonymous.get(CERT)).status_code == 401
    async with certified.anonymous("10.0.0.77") as stranger:
        assert (await stranger.get(CERT)).status_code == 403
        assert (await stranger.get(KEYS)).status_code == 403


async def _seqs(service: CertService) -> dict[str, int | None]:
    return {
        name: (await service.certificate(address))["seq"] for name, (address, _, _) in FLEET.items()
    }


async def test_a_change_to_what_a_certificate_binds_reissues_it_and_wakes_that_vm_only(
    certified: CertService,
) -> None:
    await _setup(certified, None)
    watches = {name: (address, CERT) for name, (address, _, _) in FLEET.items()}

    async def admin_call(method: str, path: str, body: Any) -> None:
        async with certified.admin() as admin:
            response = await admin.request(method, path, json=body)
            assert response.is_success, response.text

    changes: list[tuple[str, Callable[[], Awaitable[object]], set[str]]] = [
        # A context value an overlay reads: w1 (app web) gets security_profile high.
        ("context elevated", lambda: _set_context(certified, "threat_level", "elevated"), {"w1"}),
        # An enforced overlay moves the dev instances, the pinned one included.
        ("context high", lambda: _set_context(certified, "threat_level", "high"), {"x1", "p1"}),
        ("context low", lambda: _set_context(certified, "threat_level", "low"), {"w1", "x1", "p1"}),
        # A label the policy reads moves w1 to api; a label it does not read is in the cert.
        (
            "label moves",
            lambda: admin_call("PATCH", "/v1/admin/instances/w1/labels", {"app": "api"}),
            {"w1"},
        ),
        (
            "label only",
            lambda: admin_call("PATCH", "/v1/admin/instances/s1/labels", {"team": "a"}),
            {"s1"},
        ),
        # A new version of a persona two instances hold (one by policy, one pinned).
        (
            "persona",
            lambda: certified.put_persona(
                "db", persona_doc(7, mode="restricted", peers=[{"persona": "api"}])
            ),
            {"d1", "p1"},
        ),
        ("pin", lambda: certified.pin("s1", "web"), {"s1"}),
        (
            "policy",
            lambda: admin_call(
                "PUT",
                "/v1/admin/policy",
                {"persona_policy": {**POLICY_BODY, "default": "web"}},
            ),
            set(),  # s1 is pinned now; everyone else matches a rule
        ),
        # Nothing a certificate binds: a persona nobody holds, a new instance.
        ("unheld persona", lambda: certified.put_persona("quarantine", persona_doc(0)), set()),
        ("new instance", lambda: certified.add_instance("z1", "10.0.0.50"), set()),
    ]
    for name, change, expected in changes:
        before = await _seqs(certified)
        assert await woken_by(certified, watches, change()) == expected, name
        after = await _seqs(certified)
        for instance in FLEET:
            if instance in expected:
                assert (after[instance] or 0) > (before[instance] or 0), (name, instance)
            else:
                assert after[instance] == before[instance], (name, instance)
    # What the last changes left is what the certificates say.
    w1 = await certified.certificate("10.0.0.1")
    assert (await certified.verify("10.0.0.1", w1["certificate"])).persona == "api"
    d1 = await certified.certificate("10.0.0.2")
    cert = await certified.verify("10.0.0.2", d1["certificate"])
    assert (cert.persona, cert.persona_version, cert.priority) == ("db", 2, 7)


POLICY_BODY: dict[str, Any] = {
    "context": {"threat_level": {"values": ["low", "elevated", "high"], "default": "low"}},
    "rules": [
        {"name": "database", "persona": "db", "match": {"matchLabels": {"app": "db"}}},
        {"name": "api", "persona": "api", "match": {"matchLabels": {"app": "api"}}},
        {"name": "web", "persona": "web", "match": {"matchLabels": {"app": "web"}}},
    ],
}


async def _watch(service: CertService, address: str, path: str) -> asyncio.Task[httpx.Response]:
    async with await service.vm(address) as vm:
        etag = (await vm.get(path)).headers["etag"]

    async def run() -> httpx.Response:
        async with await service.vm(address) as vm:
            return await vm.get(
                path,
                params={"wait_for_change": "true", "last_etag": etag, "timeout_sec": 20},
                timeout=30,
            )

    return asyncio.create_task(run())


async def test_a_certificate_is_reissued_before_it_expires_and_wakes_its_watch(
    certified: CertService,
) -> None:
    await certified.put_persona("web", persona_doc(2))
    await certified.add_instance("w1", "10.0.0.1")
    await certified.pin("w1", "web")
    first = await certified.certificate("10.0.0.1")

    # Half the lifetime left: nothing is due, nothing is published.
    certified.clock.now = START + LIFETIME / 2
    assert await certified.fleet.renew() == set()
    assert await certified.certificate("10.0.0.1") == first

    watcher = await _watch(certified, "10.0.0.1", CERT)
    await until_waiting(certified, 1)
    # Less than a third left: re-issued, and the watch returns the new one.
    certified.clock.now = START + LIFETIME * 2 / 3 + 1
    await certified.fleet.renew()
    renewed = (await asyncio.wait_for(watcher, 5)).json()
    assert renewed["seq"] > first["seq"]
    assert renewed["expires_at"] == int(certified.clock.now) + LIFETIME
    cert = await certified.verify("10.0.0.1", renewed["certificate"])
    assert cert.issued_at == int(certified.clock.now)
    assert await certified.certificate("10.0.0.1") == renewed


async def test_key_rotation_keeps_both_keys_during_the_overlap_then_drops_the_old(
    certified: CertService,
) -> None:
    path = certified.keys.path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    await certified.put_persona("web", persona_doc(2))
    await certified.add_instance("w1", "10.0.0.1")
    await certified.pin("w1", "web")
    old = await certified.certificate("10.0.0.1")
    old_kid = (await certified.key_set("10.0.0.1")).key_ids
    assert len(old_kid) == 1

    keys_watch = await _watch(certified, "10.0.0.1", KEYS)
    cert_watch = await _watch(certified, "10.0.0.1", CERT)
    await until_waiting(certified, 2)
    # As `netpersona keys rotate` does it, on the file, while the service runs.
    ring = KeyFile(path).rotate(certified.clock.now, overlap=100)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert set(json.loads(path.read_text())["keys"][0]["jwk"]) >= {"d", "kid"}
    await certified.fleet.renew()
    both = KeySet.from_jwks((await asyncio.wait_for(keys_watch, 5)).json())
    assert set(both.key_ids) == {old_kid[0], ring.newest.kid}
    new = (await asyncio.wait_for(cert_watch, 5)).json()
    assert new["seq"] > old["seq"]
    # During the overlap both certificates verify with the served set.
    assert (await certified.verify("10.0.0.1", old["certificate"])).key_id == old_kid[0]
    assert (await certified.verify("10.0.0.1", new["certificate"])).key_id == ring.newest.kid

    # After the overlap the old key is gone, and what it signed no longer verifies.
    certified.clock.now = START + 101
    keys_watch = await _watch(certified, "10.0.0.1", KEYS)
    await until_waiting(certified, 1)
    await certified.fleet.renew()
    after = KeySet.from_jwks((await asyncio.wait_for(keys_watch, 5)).json())
    assert after.key_ids == (ring.newest.kid,)
    verdict = Verifier(after).verify(old["certificate"], now=START, held=None)
    assert isinstance(verdict, Rejected)
    assert verdict.reason is RejectReason.UNKNOWN_KEY
    current = await certified.certificate("10.0.0.1")
    assert (await certified.verify("10.0.0.1", current["certificate"])).key_id == ring.newest.kid


async def test_seq_keeps_growing_across_restarts_and_a_recreated_instance(
    tmp_path: Path,
) -> None:
    clock = Clock()
    store = SqliteStore(tmp_path / "netpersona.db")
    secrets = {role: store.create_token(f"test-{role.value}", role, "test")[1] for role in Role}
    try:
        first = _make(tmp_path, store, secrets, clock)
        await first.put_persona("web", persona_doc(2))
        await first.add_instance("w1", "10.0.0.1")
        await first.pin("w1", "web")
        issued = await first.certificate("10.0.0.1")
    finally:
        store.close()

    # A restart with nothing changed serves the very same certificate (a watch resumes).
    store = SqliteStore(tmp_path / "netpersona.db")
    try:
        second = _make(tmp_path, store, secrets, clock)
        assert await second.certificate("10.0.0.1") == issued
        async with second.admin() as admin:
            assert (await admin.delete("/v1/admin/instances/w1")).status_code == 204
        # Re-created with another label, with the clock even gone back: the stored seq decides.
        clock.now = START - 3600
        await second.add_instance("w1", "10.0.0.1", {"generation": "2"})
        await second.pin("w1", "web")
        again = await second.certificate("10.0.0.1")
        assert again["seq"] > issued["seq"]
    finally:
        store.close()


async def test_a_key_published_ahead_is_served_first_and_signs_only_from_its_time(
    certified: CertService,
) -> None:
    await certified.put_persona("web", persona_doc(2))
    await certified.add_instance("w1", "10.0.0.1")
    await certified.pin("w1", "web")
    old = await certified.certificate("10.0.0.1")
    (old_kid,) = (await certified.key_set("10.0.0.1")).key_ids

    ring = KeyFile(certified.keys.path).rotate(
        certified.clock.now, overlap=LIFETIME, publish_ahead=10
    )
    await certified.fleet.renew()
    assert set((await certified.key_set("10.0.0.1")).key_ids) == {old_kid, ring.newest.kid}
    assert await certified.certificate("10.0.0.1") == old  # the old key still signs

    certified.clock.now = START + 10
    await certified.fleet.renew()
    new = await certified.certificate("10.0.0.1")
    assert (await certified.verify("10.0.0.1", new["certificate"])).key_id == ring.newest.kid
    # The overlap counts from when the new key started signing.
    certified.clock.now = START + 10 + LIFETIME - 1
    await certified.fleet.renew()
    assert old_kid in (await certified.key_set("10.0.0.1")).key_ids
    certified.clock.now = START + 10 + LIFETIME
    await certified.fleet.renew()
    assert (await certified.key_set("10.0.0.1")).key_ids == (ring.newest.kid,)


async def test_a_change_of_many_is_certified_in_batches_whether_the_write_waits_or_not(
    certified: CertService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fleet_module, "CERTIFICATE_BATCH", 2)
    await certified.put_persona("web", persona_doc(2))
    addresses = [f"10.0.0.{n}" for n in range(1, 6)]
    for n, address in enumerate(addresses, 1):
        await certified.add_instance(f"w{n}", address)
        await certified.pin(f"w{n}", "web")
    before = [await certified.certificate(a) for a in addresses]

    # Few changed: the write waits for their certificates, issued two at a time.
    await certified.put_persona("web", persona_doc(3))
    after = [await certified.certificate(a) for a in addresses]
    for address, old, new in zip(addresses, before, after, strict=True):
        assert new["seq"] > old["seq"]
        assert (await certified.verify(address, new["certificate"])).persona_version == 2

    # Many changed (over INLINE_CERTIFICATES): acknowledged first, certified right after.
    monkeypatch.setattr(fleet_module, "INLINE_CERTIFICATES", 1)
    watcher = await _watch(certified, addresses[-1], CERT)
    await until_waiting(certified, 1)
    await certified.put_persona("web", persona_doc(4))
    renewed = (await asyncio.wait_for(watcher, 30)).json()
    assert (await certified.verify(addresses[-1], renewed["certificate"])).persona_version == 3
    await certified.fleet.renew()  # whatever the batches left (nothing, once they are done)
    for address in addresses:
        body = await certified.certificate(address)
        assert (await certified.verify(address, body["certificate"])).persona_version == 3
