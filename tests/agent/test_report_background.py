"""A status report runs apart from the pass that made it: a newer answer does not wait."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, cast

import httpx

from netpersona.agent.client import Watched
from netpersona.agent.runner import Agent, AgentConfig
from netpersona.dataplane.kernel import Kernel
from tests.agent.test_watch import INSTANCE, URL, client, synchronous


class CountersOnly:
    """A kernel with an empty table: the only thing a rejected persona's report reads."""

    def nft_counters(self) -> list[Any]:
        return []


def persona(version: int) -> dict[str, Any]:
    # Not a valid persona (its required fields are missing): refused without a kernel.
    return {
        "assigned": True,
        "name": "web",
        "version": version,
        "overlays": [],
        "digest": f"d{version}",
        "network_persona": {"communication_mode": "unicast"},
    }


@synchronous
async def test_a_slow_report_does_not_hold_up_the_next_pass(tmp_path: Path) -> None:
    release = asyncio.Event()
    reports: list[dict[str, Any]] = []
    answers: dict[str, Any] = {
        "/v1/instance": INSTANCE,
        "/v1/instance/network_persona": persona(1),
        "/v1/instance/peers": {"peers": []},
    }

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            reports.append(json.loads(request.content))
            await release.wait()  # the service is slow to take the first report
            return httpx.Response(204)
        await asyncio.sleep(0.2)  # a long-poll that answers the same again
        return httpx.Response(200, json=answers[request.url.path], headers={"ETag": '"e"'})

    config = AgentConfig(URL, tmp_path, gossip=False, drift_interval=3600)
    agent = Agent(config, cast(Kernel, CountersOnly()), client(handle))
    running = asyncio.create_task(agent.run())
    try:
        for _ in range(200):
            await asyncio.sleep(0.05)
            if reports:
                break
        assert [r["version"] for r in reports] == [1]
        # A newer answer while the first report hangs: its pass runs and is recorded now.
        agent.latest["persona"] = Watched(persona(2), '"e2"')
        agent.dirty.set()
        for _ in range(200):
            await asyncio.sleep(0.05)
            if agent.record.version == 2:
                break
        assert agent.record.version == 2
        assert agent.record.result == "rejected"
        assert [r["version"] for r in reports] == [1]  # still one report under way
        # Once the service takes it, the newest outcome follows.
        release.set()
        for _ in range(200):
            await asyncio.sleep(0.05)
            if reports[-1]["version"] == 2:
                break
        assert [r["version"] for r in reports] == [1, 2]
        assert not running.done(), "the agent stopped"
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


@synchronous
async def test_a_run_of_quick_changes_is_reported_once_it_is_over(tmp_path: Path) -> None:
    reports: list[dict[str, Any]] = []
    answers: dict[str, Any] = {
        "/v1/instance": INSTANCE,
        "/v1/instance/network_persona": persona(1),
        "/v1/instance/peers": {"peers": []},
    }

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            reports.append(json.loads(request.content))
            return httpx.Response(204)
        await asyncio.sleep(0.2)  # a long-poll that answers the same again
        return httpx.Response(200, json=answers[request.url.path], headers={"ETag": '"e"'})

    config = AgentConfig(URL, tmp_path, gossip=False, drift_interval=3600)
    agent = Agent(config, cast(Kernel, CountersOnly()), client(handle))
    running = asyncio.create_task(agent.run())
    try:
        for _ in range(200):
            await asyncio.sleep(0.05)
            if reports:
                break
        assert [r["version"] for r in reports] == [1]
        # Twenty changes, 50 ms apart: each is recorded when its pass ends...
        for version in range(2, 22):
            agent.latest["persona"] = Watched(persona(version), f'"e{version}"')
            agent.dirty.set()
            await asyncio.sleep(0.05)
            assert agent.record.version == version
        # ... and the service hears of the last one, once the run is over.
        for _ in range(200):
            await asyncio.sleep(0.05)
            if reports[-1]["version"] == 21:
                break
        assert reports[-1]["version"] == 21
        assert len(reports) <= 6, [r["version"] for r in reports]  # not one a change
        assert not running.done(), "the agent stopped"
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
