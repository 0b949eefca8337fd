"""Certificates and key rotation with a real ``netpersona serve`` and ``netpersona keys``."""

from __future__ import annotations

import stat
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from netpersona.certs import Accepted, KeySet, Verifier
from netpersona.service.auth import TOKEN_HEADER, TOKEN_TTL_HEADER
from netpersona.service.keyring import KEY_FILE
from netpersona.system.command import run
from tests.service.conftest import persona_doc
from tests.service.serve_process import NETPERSONA, serve

pytestmark = pytest.mark.subprocess


def _verify(vm: httpx.Client, token: str) -> str:
    keys = KeySet.from_jwks(vm.get("/v1/keys").json())
    verdict = Verifier(keys).verify(token, now=time.time(), held=None)
    assert isinstance(verdict, Accepted), verdict
    return verdict.certificate.key_id


def test_a_rotation_while_serving_reaches_watchers_and_both_keys_verify(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serve(data, "--certificate-lifetime", "30") as server, server.admin() as admin:
        key_file = data / KEY_FILE
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        admin.put("/v1/admin/personas/web", json=persona_doc(3))
        made = admin.post("/v1/admin/instances", json={"id": "vm2", "addresses": ["127.0.0.2"]})
        assert made.status_code == 201
        admin.put("/v1/admin/instances/vm2/pin", json={"persona": "web"})
        with server.vm("127.0.0.2") as vm:
            token = vm.put("/v1/token", headers={TOKEN_TTL_HEADER: "300"})
            vm.headers[TOKEN_HEADER] = token.text
            first = vm.get("/v1/instance/certificate").json()
            old_kid = _verify(vm, first["certificate"])
            keys_etag = vm.get("/v1/keys").headers["etag"]

            result: dict[str, Any] = {}

            def poll() -> None:
                result["response"] = vm.get(
                    "/v1/keys",
                    params={"wait_for_change": "true", "last_etag": keys_etag, "timeout_sec": 30},
                    timeout=40,
                )

            waiter = threading.Thread(target=poll)
            waiter.start()
            rotated = run(
                [NETPERSONA, "keys", "rotate", "--data-dir", str(data), "--overlap", "60"]
            )
            new_kid = rotated.stdout.strip()
            start = time.monotonic()
            waiter.join(timeout=20)
            # The service looks at the key file every 3 s at this lifetime.
            assert time.monotonic() - start < 10
            assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
            served = KeySet.from_jwks(result["response"].json())
            assert set(served.key_ids) == {old_kid, new_kid}

            second = vm.get("/v1/instance/certificate").json()
            assert second["seq"] > first["seq"]
            assert _verify(vm, second["certificate"]) == new_kid
            assert _verify(vm, first["certificate"]) == old_kid

        listed = run([NETPERSONA, "keys", "list", "--data-dir", str(data)]).stdout
        states = {line.split()[0]: line.split()[1] for line in listed.splitlines()[1:]}
        assert states == {new_kid: "signing", old_kid: "verify"}  # "verify only"
