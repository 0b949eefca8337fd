"""``/metrics``: requests, watchers, changes, wake-ups and latency, the process and the build, in
Prometheus text that passes promtool's rules."""

from __future__ import annotations

import asyncio
import platform

import pytest
from prometheus_client.parser import text_string_to_metric_families

from netpersona.build_info import package_version
from tests.promtool import check_metrics
from tests.service.conftest import Service, persona_doc

pytestmark = pytest.mark.anyio


async def scrape(service: Service) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with service.anonymous("192.0.2.9") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def test_metrics_count_requests_watchers_changes_and_wakeups(service: Service) -> None:
    await service.add_instance("vm1", "10.0.0.1")
    await service.put_persona("web", persona_doc(1))
    await service.pin("vm1", "web")
    async with await service.vm("10.0.0.1") as vm:
        etag = (await vm.get("/v1/instance/network_persona")).headers["etag"]
        watch = asyncio.create_task(
            vm.get(
                "/v1/instance/network_persona",
                params={"wait_for_change": "true", "last_etag": etag, "timeout_sec": 30},
            )
        )
        for _ in range(1000):
            if service.app.state.netpersona.fleet.notifier.waiting():
                break
            await asyncio.sleep(0.01)
        during = await scrape(service)
        await service.put_persona("web", persona_doc(2))
        assert (await watch).status_code == 200
    after = await scrape(service)

    assert during[("netpersona_watchers", (("view", "persona"),))] == 1
    assert after[("netpersona_watchers", (("view", "persona"),))] == 0
    assert after[("netpersona_watch_wakeups_total", (("view", "persona"),))] == 1
    assert after[("netpersona_changes_total", (("kind", "persona"),))] == 2
    assert after[("netpersona_changes_total", (("kind", "pin"),))] == 1
    ok_reads = (
        "netpersona_http_requests_total",
        (("method", "GET"), ("route", "/v1/instance/network_persona"), ("status", "200")),
    )
    assert after[ok_reads] == 2
    timed = (
        "netpersona_http_request_duration_seconds_count",
        (("method", "GET"), ("route", "/v1/instance/network_persona"), ("watch", "true")),
    )
    assert after[timed] == 1
    # Labels never name an instance or an address.
    assert "vm1" not in str(after)
    assert "10.0.0.1" not in str(after)


@pytest.mark.subprocess  # promtool
async def test_metrics_say_the_build_and_the_process_and_pass_the_promtool_rules(
    service: Service,
) -> None:
    await service.add_instance("vm1", "10.0.0.1")
    async with service.anonymous("192.0.2.9") as client:
        await client.get("/v1/instance")  # a request of each kind, so every family has samples
        response = await client.get("/metrics")
    assert check_metrics(response.text) == []
    got = await scrape(service)
    builds = [labels for name, labels in got if name == "netpersona_build_info"]
    assert len(builds) == 1
    labels = dict(builds[0])
    assert labels["version"] == package_version()
    assert labels["python"] == platform.python_version()
    assert got[("process_cpu_seconds_total", ())] > 0
    assert got[("process_resident_memory_bytes", ())] > 0
