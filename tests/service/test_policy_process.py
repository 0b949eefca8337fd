"""A real ``netpersona serve``: a policy applied from the CLI and a context change reach a VM
that is long-polling for its persona."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from netpersona.service.auth import TOKEN_HEADER, TOKEN_TTL_HEADER
from tests.service.conftest import persona_doc
from tests.service.serve_process import ServeProcess, serve
from tests.service.test_admin_cli import admin
from tests.service.test_policy import POLICY

pytestmark = pytest.mark.subprocess

TESTS = {"tests": [{"name": "web is web", "instance": "vm2", "expect": {"rule": "web"}}]}


def _waiting_watchers(server: ServeProcess) -> float:
    text = httpx.get(server.url + "/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('netpersona_watchers{view="persona"}')
    )


def test_a_policy_and_a_context_change_reach_a_long_polling_vm(tmp_path: Path) -> None:
    policy_file, tests_file = tmp_path / "policy.yaml", tmp_path / "tests.yaml"
    policy_file.write_text(yaml.safe_dump(POLICY))
    tests_file.write_text(yaml.safe_dump(TESTS))
    with serve(tmp_path / "data") as server, server.admin() as operator:
        operator.put("/v1/admin/personas/web", json=persona_doc(2))
        for name in ("db", "api", "sandbox"):
            operator.put(f"/v1/admin/personas/{name}", json=persona_doc(3))
        operator.put(
            "/v1/admin/personas/quarantine",
            json=persona_doc(0, mode="restricted", peers=[{"labels": {"role": "admin"}}]),
        )
        made = operator.post(
            "/v1/admin/instances",
            json={"id": "vm2", "addresses": ["127.0.0.2"], "labels": {"app": "web", "env": "dev"}},
        )
        assert made.status_code == 201, made.text

        with server.vm("127.0.0.2") as vm:
            token = vm.put("/v1/token", headers={TOKEN_TTL_HEADER: "300"})
            vm.headers[TOKEN_HEADER] = token.text
            first = vm.get("/v1/instance/network_persona")
            assert first.json()["name"] is None

            code, out, err = admin(
                server, "policy", "apply", str(policy_file), "--tests", str(tests_file)
            )
            assert (code, out.strip(), err) == (0, "policy is at version 1", "")
            served = vm.get("/v1/instance/network_persona")
            assert (served.json()["name"], served.json()["overlays"]) == ("web", [])

            answers: list[httpx.Response] = []

            def long_poll() -> None:
                answers.append(
                    vm.get(
                        "/v1/instance/network_persona",
                        params={
                            "wait_for_change": "true",
                            "last_etag": served.headers["etag"],
                            "timeout_sec": 60,
                        },
                        timeout=70,
                    )
                )

            poller = threading.Thread(target=long_poll)
            poller.start()
            try:
                deadline = time.monotonic() + 10
                while _waiting_watchers(server) < 1:
                    assert time.monotonic() < deadline, "the long-poll never started waiting"
                    time.sleep(0.05)
                changed_at = time.monotonic()
                code, _, err = admin(server, "context", "threat_level=high")
                assert (code, err) == (0, "")
            finally:
                poller.join(timeout=70)
            assert answers, "the long-poll did not return"
            assert time.monotonic() - changed_at < 10
            body = answers[0].json()
            assert (body["name"], body["overlays"]) == (
                "quarantine",
                ["quarantine-dev", "web-raised"],
            )
            assert answers[0].headers["etag"] != served.headers["etag"]

        code, out, _ = admin(server, "policy", "explain", "vm2")
        assert code == 0
        assert "from rule web" in out
        assert "quarantine-dev" in out
        code, out, _ = admin(server, "policy", "diff", "--context", "threat_level=low")
        assert code == 0
        assert (
            "vm2: web (rule web) + quarantine-dev, web-raised = quarantine -> web (rule web)" in out
        )
        assert "1 instance(s) would change" in out
        code, _, err = admin(server, "policy", "diff", "--context", "threat_level=severe")
        assert code == 1
        assert "/context/threat_level" in err
        code, out, _ = admin(server, "policy", "show")
        assert code == 0
        assert '"version": 1' in out
