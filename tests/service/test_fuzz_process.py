"""Generated requests against a real ``netpersona serve``: no answer is ever a 5xx.

Schemathesis reads the service's own OpenAPI document and generates, for every operation,
requests that fit it (positive) and requests that break it (negative: wrong types, out of
range numbers, missing fields); admin calls carry a valid admin token and VM calls come from
an instance's address with its session token, so the cases reach past authentication. A
bounded number of cases per operation keeps the run near a minute on a loaded machine.

Random generation seldom hits the values that once broke the service, so every parameter of
every operation is also sent each of :data:`EDGES` (non-ASCII digits, 5,000 digits, 2^63, ...),
and every operation with a body each of :data:`EDGE_BODIES` (deep nesting, NaN, a lone
surrogate, integers past 64 bits).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from requests.adapters import HTTPAdapter
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from netpersona.service.auth import TOKEN_HEADER, TOKEN_TTL_HEADER
from tests.service.conftest import persona_doc
from tests.service.serve_process import ServeProcess, serve

pytestmark = pytest.mark.subprocess

CASES_PER_OPERATION = 30
EDGES = ["\u00b2", "9" * 5000, str(2**63), "-1", "0", "", "%ED%B2%80", "x" * 3000]
EDGE_BODIES = [
    b"[" * 1000 + b"]" * 1000,
    b'{"x": NaN, "value": NaN, "version": NaN}',
    b'{"value": "\\udc80", "name": "\\udc80", "persona": "\\udc80"}',
    b'{"version": 9223372036854775808, "result": "applied", "drops": {"x": 1e999}}',
    b'{"network_persona": {"priority": 1, "x-n": 1' + b"0" * 5000 + b"}}",
    b"\xff\xfe not utf-8",
]
# A valid value for each path parameter, so that the edge lands in the one parameter tried.
SEEDS = {
    "instance_id": "vm2",
    "name": "db",
    "version": "1",
    "key": "threat_level",
    "token_id": "tok-00000000",
}


def _fill(template: str, **overrides: str) -> str:
    for name, seed in {**SEEDS, **overrides}.items():
        template = template.replace("{" + name + "}", seed)
    return template


BUDGET_SECONDS = 75


class _FromAddress(HTTPAdapter):
    """Connections from a chosen loopback address: a VM is known by where it calls from."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def _seed(server: ServeProcess) -> None:
    with server.admin() as admin:
        for n, persona in ((2, "db"), (3, "web")):
            assert admin.put(f"/v1/admin/personas/{persona}", json=persona_doc(n)).is_success
            made = admin.post(
                "/v1/admin/instances",
                json={"id": f"vm{n}", "addresses": [f"127.0.0.{n}"], "labels": {"app": persona}},
            )
            assert made.status_code == 201
        assert admin.put("/v1/admin/instances/vm2/pin", json={"persona": "db"}).is_success
        assert admin.put("/v1/admin/context/threat_level", json={"value": "low"}).is_success


def _vm_session(server: ServeProcess, address: str) -> tuple[requests.Session, str]:
    session = requests.Session()
    session.mount("http://", _FromAddress(address))
    token = session.put(server.url + "/v1/token", headers={TOKEN_TTL_HEADER: "3600"})
    assert token.status_code == 200, token.text
    return session, token.text


def _fuzz(
    operation: Any, url: str, session: requests.Session, headers: dict[str, str]
) -> tuple[int, list[str]]:
    """Run the generated cases of one operation; how many, and the 5xx answers."""
    server_errors: list[str] = []
    seen = 0
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @settings(
        max_examples=CASES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def call(case: Any) -> None:
        nonlocal seen
        if isinstance(case.query, dict) and "wait_for_change" in case.query:
            # A watch answers at once when the caller's ETag is not the current one.
            case.query["last_etag"] = "not-the-current-etag"
        response = case.call(base_url=url, session=session, headers=headers, timeout=30)
        seen += 1
        if response.status_code >= 500:
            server_errors.append(
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:300]}"
            )

    call()
    return seen, server_errors


def _edge_requests(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, requests arguments) putting each edge in each parameter and body."""
    found = []
    for template, methods in spec["paths"].items():
        for method, operation in methods.items():
            path = _fill(template)
            kwargs: dict[str, Any]
            for parameter in operation.get("parameters", []):
                for edge in EDGES:
                    where, name = parameter["in"], parameter["name"]
                    if where == "path":
                        url, kwargs = _fill(template, **{name: edge}), {}
                    elif where == "query":
                        url, kwargs = path, {"params": {name: edge}}
                    else:
                        url, kwargs = path, {"headers": {name: edge}}
                    found.append((method.upper(), url, kwargs))
            if "requestBody" in operation:
                for body in EDGE_BODIES:
                    kwargs = {"data": body, "headers": {"Content-Type": "application/json"}}
                    found.append((method.upper(), path, kwargs))
    return found


def _edges(
    server: ServeProcess, admin: requests.Session, vm: requests.Session, session_token: str
) -> list[str]:
    spec = requests.get(server.url + "/openapi.json", timeout=30).json()
    server_errors = []
    for method, path, kwargs in _edge_requests(spec):
        is_admin = path.startswith("/v1/admin")
        session = admin if is_admin else vm
        headers = (
            {"Authorization": f"Bearer {server.admin_token}"}
            if is_admin
            else {TOKEN_HEADER: session_token}
        )
        headers.update(kwargs.pop("headers", {}))
        response = session.request(method, server.url + path, headers=headers, timeout=30, **kwargs)
        if response.status_code >= 500:
            server_errors.append(f"{method} {path} {kwargs} -> {response.status_code}")
    return server_errors


def test_generated_requests_never_get_a_5xx(tmp_path: Path) -> None:
    with serve(tmp_path / "data") as server:
        _seed(server)
        schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
        admin = requests.Session()
        vm, session_token = _vm_session(server, "127.0.0.2")
        server_errors: list[str] = []
        seen = 0
        started = time.monotonic()
        for result in schema.get_all_operations():
            if time.monotonic() - started > BUDGET_SECONDS:
                break
            assert isinstance(result, Ok), result
            operation = result.ok()
            if operation.path.startswith("/v1/admin"):
                headers = {"Authorization": f"Bearer {server.admin_token}"}
                count, errors = _fuzz(operation, server.url, admin, headers)
            else:
                count, errors = _fuzz(operation, server.url, vm, {TOKEN_HEADER: session_token})
            seen += count
            server_errors += errors
        server_errors += _edges(server, admin, vm, session_token)
        assert server_errors == []
        assert seen > 300
        assert server.process is not None
        assert server.process.poll() is None
        with server.admin() as check:
            assert check.get("/v1/admin/instances").status_code == 200
