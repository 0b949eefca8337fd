"""The console over its ASGI app: sign-in, pages, the what-if, and who may write."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from netpersona.store import Role
from tests.service.conftest import Service

pytestmark = pytest.mark.anyio


def browser(service: Service) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.app, client=("192.0.2.250", 40000)),
        base_url="http://metadata",
    )


@contextlib.asynccontextmanager
async def signed_in(service: Service, role: Role) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(service) as client:
        response = await client.post("/ui/sign-in", data={"token": service.secrets[role]})
        assert response.status_code == 303, response.text
        yield client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def test_signing_in_keeps_the_token_out_of_the_cookie_and_the_url(
    lab_service: Service,
) -> None:
    async with browser(lab_service) as client:
        assert (await client.get("/ui/")).headers["location"] == "/ui/sign-in"
        response = await client.post(
            "/ui/sign-in", data={"token": lab_service.secrets[Role.READER]}
        )
        assert response.status_code == 303
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
        assert lab_service.secrets[Role.READER] not in cookie
        assert lab_service.secrets[Role.READER] not in response.headers["location"]
        fleet = await client.get("/ui/")
    assert fleet.status_code == 200
    for vm, persona in (("db1", "db-restricted v1"), ("web1", "web-frontend v1")):
        row = re.search(rf'data-instance="{vm}">.*?class="persona">([^<]+)', fleet.text, re.S)
        assert row is not None
        assert row.group(1).strip() == persona


async def test_another_sites_form_cannot_sign_in_and_pages_cannot_be_framed(
    lab_service: Service,
) -> None:
    async with browser(lab_service) as client:
        forged = await client.post(
            "/ui/sign-in",
            data={"token": lab_service.secrets[Role.READER]},
            headers={"Origin": "https://elsewhere.example"},
        )
        assert forged.status_code == 403
        assert "set-cookie" not in forged.headers
        own = await client.post(
            "/ui/sign-in",
            data={"token": lab_service.secrets[Role.READER]},
            headers={"Origin": "http://metadata"},
        )
        assert own.status_code == 303
        page = await client.get("/ui/")
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def test_a_wrong_token_is_refused(lab_service: Service) -> None:
    async with browser(lab_service) as client:
        response = await client.post("/ui/sign-in", data={"token": "np_not-a-token"})
        assert response.status_code == 401
        assert "not valid" in response.text
        assert "set-cookie" not in response.headers
        assert (await client.get("/ui/")).status_code == 303


async def test_every_page_renders_for_a_reader(lab_service: Service) -> None:
    async with signed_in(lab_service, Role.READER) as client:
        pages = {
            "/ui/?label=app=media": "media1",
            "/ui/?label=app": "expected KEY=VALUE",
            "/ui/instances/db1": "api-server",
            "/ui/instances/api1": 'id="can"',
            "/ui/personas": "db-restricted",
            "/ui/personas/db-restricted": "Current document",
            "/ui/reachability": "matrix",
            "/ui/reachability?service=postgres": "api1 reaches db1 with tcp/5432",
            "/ui/can?from=admin1&to=db1&proto=postgres": "drop_not_peer",
            "/ui/audit": "persona.put",
            "/ui/what-if": "threat_level",
        }
        for path, text in pages.items():
            response = await client.get(path)
            assert response.status_code == 200, (path, response.text[:300])
            assert text in response.text, path


async def test_the_what_if_shows_the_blast_radius_and_a_reader_cannot_apply_it(
    lab_service: Service,
) -> None:
    async with signed_in(lab_service, Role.READER) as client:
        form = await client.get("/ui/what-if")
        csrf = csrf_of(form.text)
        body = {"csrf": csrf, "context": "threat_level=high", "labels": ""}
        result = await client.post("/ui/what-if", data=body)
        assert result.status_code == 200
        assert 'data-pair="admin1|disc1|dns|lost"' in result.text
        assert 'data-pair="disc1|disc2|udp/6000-6010 broadcast|lost"' in result.text
        assert "what-if-apply" not in result.text
        refused = await client.post("/ui/what-if/apply", data=body)
        assert refused.status_code == 403
        forged = await client.post("/ui/what-if", data={**body, "csrf": "forged"})
        assert forged.status_code == 403
    async with lab_service.admin(Role.READER) as reader:
        context = (await reader.get("/v1/admin/context/threat_level")).json()
    assert context["value"] == "low"


async def test_an_operator_applies_a_what_if(lab_service: Service) -> None:
    async with signed_in(lab_service, Role.OPERATOR) as client:
        csrf = csrf_of((await client.get("/ui/what-if")).text)
        body = {"csrf": csrf, "context": "threat_level=high", "labels": ""}
        shown = await client.post("/ui/what-if", data=body)
        assert "what-if-apply" in shown.text
        applied = await client.post("/ui/what-if/apply", data=body)
        assert applied.status_code == 303
        bad = await client.post("/ui/what-if/apply", data={**body, "context": "threat_level=x"})
        assert bad.status_code == 422
    async with lab_service.admin(Role.READER) as reader:
        context = (await reader.get("/v1/admin/context/threat_level")).json()
        audit = (await reader.get("/v1/admin/audit", params={"limit": 1})).json()
    assert context["value"] == "high"
    assert "via the console" in audit["items"][0]["actor"]


async def test_signing_out_ends_the_session(lab_service: Service) -> None:
    async with signed_in(lab_service, Role.READER) as client:
        csrf = csrf_of((await client.get("/ui/")).text)
        cookie = client.cookies.get("np_console")
        assert (await client.post("/ui/sign-out", data={"csrf": csrf})).status_code == 303
        client.cookies.set("np_console", cookie or "")
        assert (await client.get("/ui/")).status_code == 303


async def test_the_api_docs_load_nothing_from_a_cdn(lab_service: Service) -> None:
    async with browser(lab_service) as client:
        docs = await client.get("/docs")
        script = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert docs.status_code == 200
    assert "cdn" not in docs.text.lower()
    assert "/docs/assets/swagger-ui-bundle.js" in docs.text
    assert script.status_code == 200
    assert len(script.content) > 100_000
