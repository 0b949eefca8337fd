"""The console in a real headless Chromium, against a real ``netpersona serve`` process.

Screenshots of each page go to ``$NETPERSONA_SCREENSHOTS`` when it is set (the README's and
docs/console.md's come from ``NETPERSONA_SCREENSHOTS=docs/img``), else to a temporary folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from netpersona.lab.matrix import planned_hosts
from netpersona.reachability import connectivity_changes
from tests.console.browser import chromium, require_browser
from tests.console.seed import scenario, seed_requests
from tests.service.serve_process import ServeProcess, serve

pytestmark = [pytest.mark.subprocess, pytest.mark.slow, pytest.mark.browser]

WAIT = 10.0  # generous: the machine is shared; bench/console.py measures the real time


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    require_browser()
    data = tmp_path_factory.mktemp("console") / "data"
    data.mkdir()
    with serve(data) as process, process.admin() as admin:
        for method, path, body in seed_requests():
            response = admin.request(method, path, json=body)
            assert response.status_code in (200, 201), response.text
        yield process


@pytest.fixture(scope="module")
def tokens(server: ServeProcess) -> dict[str, str]:
    made = {}
    with server.admin() as admin:
        for role in ("reader", "operator"):
            answer = admin.post("/v1/admin/tokens", json={"name": f"console-{role}", "role": role})
            assert answer.status_code == 201, answer.text
            made[role] = answer.json()["token"]
    return made


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("NETPERSONA_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def sign_in(driver: webdriver.Chrome, server: ServeProcess, token: str) -> None:
    driver.get(server.url + "/ui/sign-in")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "sign-in").click()
    WebDriverWait(driver, WAIT).until(
        lambda d: d.find_elements(By.ID, "fleet") or d.find_elements(By.ID, "sign-in-error")
    )


def fleet_personas(driver: webdriver.Chrome) -> dict[str, str]:
    """Instance -> persona cell text, read in one go (live updates swap the table)."""
    found = driver.execute_script(
        """
        const out = {};
        for (const row of document.querySelectorAll("#fleet tbody tr")) {
          out[row.dataset.instance] = row.querySelector(".persona").innerText.trim();
        }
        return out;
        """
    )
    assert isinstance(found, dict)
    return {str(k): str(v) for k, v in found.items()}


def test_sign_in_shows_every_instance_with_its_persona(
    browser: webdriver.Chrome, server: ServeProcess, tokens: dict[str, str], shots: Path
) -> None:
    sign_in(browser, server, tokens["reader"])
    WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "fleet"))
    assert tokens["reader"] not in browser.current_url
    want = {h.name: f"{h.persona_name} v1" for h in planned_hosts(scenario(), scenario().context)}
    assert fleet_personas(browser) == want
    browser.save_screenshot(str(shots / "fleet.png"))
    for page, name in (
        ("/ui/instances/db1", "instance.png"),
        ("/ui/personas", "personas.png"),
        ("/ui/reachability?service=postgres", "matrix.png"),
        ("/ui/audit", "audit.png"),
    ):
        browser.get(server.url + page)
        browser.save_screenshot(str(shots / name))


def test_a_wrong_token_is_refused(browser: webdriver.Chrome, server: ServeProcess) -> None:
    sign_in(browser, server, "np_this-is-not-a-token")
    error = WebDriverWait(browser, WAIT).until(lambda d: d.find_element(By.ID, "sign-in-error"))
    assert "not valid" in error.text
    browser.get(server.url + "/ui/")
    assert browser.current_url.endswith("/ui/sign-in")


def test_a_persona_change_appears_without_a_reload(
    browser: webdriver.Chrome, server: ServeProcess, tokens: dict[str, str]
) -> None:
    sign_in(browser, server, tokens["reader"])
    WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "fleet"))
    WebDriverWait(browser, WAIT).until(
        lambda d: "on" in (d.find_element(By.ID, "live").get_attribute("class") or "")
    )
    browser.execute_script("window.__sameDocument = true;")
    before = fleet_personas(browser)["web1"]
    with server.admin() as admin:
        current = admin.get("/v1/admin/personas/web-frontend").json()
        document = {"network_persona": {**current["network_persona"], "priority": 4}}
        started = time.monotonic()
        changed = admin.put("/v1/admin/personas/web-frontend", json=document)
        assert changed.status_code == 200, changed.text
    version = changed.json()["version"]
    WebDriverWait(browser, WAIT).until(
        lambda d: fleet_personas(d).get("web1") == f"web-frontend v{version}"
    )
    took = time.monotonic() - started
    assert before != f"web-frontend v{version}"
    assert browser.execute_script("return window.__sameDocument === true;")
    print(f"persona change visible after {took:.2f} s")


def test_the_threat_level_what_if_lists_exactly_the_engines_pairs(
    browser: webdriver.Chrome, server: ServeProcess, tokens: dict[str, str], shots: Path
) -> None:
    lab = scenario()
    with server.admin() as admin:  # the fleet as the service holds it now
        policy_context = {
            e["key"]: e["value"] for e in admin.get("/v1/admin/context").json()["items"]
        }
    before = {h.name: h for h in planned_hosts(lab, policy_context)}
    after = {h.name: h for h in planned_hosts(lab, {**policy_context, "threat_level": "high"})}
    sign_in(browser, server, tokens["reader"])
    browser.get(server.url + "/ui/what-if")
    browser.find_element(By.ID, "w-context").send_keys("threat_level=high")
    browser.find_element(By.ID, "what-if-run").click()
    WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "connectivity"))
    shown = {
        tuple((row.get_attribute("data-pair") or "").split("|"))
        for row in browser.find_elements(By.CSS_SELECTOR, "#connectivity tbody tr")
    }
    browser.execute_script("document.getElementById('reachability-changes').scrollIntoView();")
    browser.save_screenshot(str(shots / "what-if.png"))
    # The persona edit of the live-update test changed web-frontend's priority only, which
    # moves no reachability; the engine over the scenario's files is the reference.
    want = {
        (c.src, c.dst, c.service, "gained" if c.gained else "lost")
        for c in connectivity_changes(before, after)
    }
    assert want
    assert shown == want


def test_a_reader_cannot_write(
    browser: webdriver.Chrome, server: ServeProcess, tokens: dict[str, str]
) -> None:
    sign_in(browser, server, tokens["reader"])
    browser.get(server.url + "/ui/what-if")
    browser.find_element(By.ID, "w-context").send_keys("threat_level=high")
    browser.find_element(By.ID, "what-if-run").click()
    WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "connectivity"))
    assert not browser.find_elements(By.ID, "what-if-apply")
    # Forge the apply request from the page itself, with the session and its CSRF token.
    status = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const form = new FormData(document.getElementById("what-if"));
        fetch("/ui/what-if/apply", {method: "POST", body: new URLSearchParams(form)})
          .then(r => done(r.status));
        """
    )
    assert status == 403
    with httpx.Client(base_url=server.url) as plain:
        bearer = {"Authorization": f"Bearer {tokens['reader']}"}
        refused = plain.put(
            "/v1/admin/context/threat_level", json={"value": "high"}, headers=bearer
        )
        assert refused.status_code == 403
        assert plain.get("/v1/admin/context/threat_level", headers=bearer).json()["value"] == "low"
