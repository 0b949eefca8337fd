"""A newer answer supersedes the pass in flight, safely: a pass that is still reading the host's
facts is dropped for the newer one (which does not wait for it), and a pass that has begun to
change the kernel ends first, so the kernel always ends in the newest plan. A real agent loop
against a real kernel in a throwaway namespace, with a service that honours long-poll."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from netpersona.agent.client import MetadataClient
from netpersona.agent.runner import Agent, AgentConfig
from netpersona.dataplane.kernel import Kernel, LinuxKernel
from netpersona.testing.netns import netns
from tests.agent.test_retry_kernel import INSTANCE, persona

pytestmark = pytest.mark.kernel

# Generous: the machine is shared.
DEADLINE = 60.0


class Held:
    """One call of a kernel method, held until released (the next call after :meth:`arm`)."""

    def __init__(self) -> None:
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def arm(self) -> None:
        self.entered.clear()
        self.release.clear()
        self.armed = True

    def wait_here(self) -> None:
        if self.armed:
            self.armed = False
            self.entered.set()
            self.release.wait(DEADLINE)


class HeldKernel:
    """The real kernel of a namespace, with ``host_view`` and ``nft_load`` calls that a test
    may hold, and the nftables loads written down."""

    def __init__(self, inner: LinuxKernel) -> None:
        self.inner = inner
        self.facts, self.load = Held(), Held()
        self.loads: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def host_view(self) -> Any:
        self.facts.wait_here()
        return self.inner.host_view()

    def nft_load(self, document: Any) -> None:
        self.load.wait_here()
        self.loads.append(repr(document))
        self.inner.nft_load(document)


class Service:
    """The three views the agent converges from; a long-poll is held until its view changes."""

    def __init__(self) -> None:
        self.views: dict[str, tuple[dict[str, Any], str]] = {
            "/v1/instance": (INSTANCE, '"i1"'),
            "/v1/instance/peers": ({"peers": []}, '"v1"'),
        }
        self.set_persona(8080, 1)

    def set_persona(self, port: int, version: int) -> None:
        self.views["/v1/instance/network_persona"] = (persona(port, version), f'"p{version}"')

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            return httpx.Response(200, content=b"tok")
        if request.method == "POST":
            return httpx.Response(204)
        path, last = request.url.path, request.url.params.get("last_etag")
        for _ in range(200):  # at most 2 s, then the same again (a long-poll's timeout)
            if self.views[path][1] != last:
                break
            await asyncio.sleep(0.01)
        body, etag = self.views[path]
        return httpx.Response(200, json=body, headers={"ETag": etag})


@contextlib.asynccontextmanager
async def running_agent(tmp_path: Path) -> AsyncIterator[tuple[HeldKernel, Service]]:
    with netns("npsuper") as ns:
        ns.run(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"])
        ns.run(["ip", "addr", "add", "10.77.0.11/24", "dev", "eth0"])
        for link in ("eth0", "eth0p"):
            ns.run(["ip", "link", "set", link, "up"])
        kernel = HeldKernel(LinuxKernel(ns.name))
        service = Service()
        config = AgentConfig("http://127.0.0.1:8169", tmp_path, gossip=False, watch_timeout=2)
        client = MetadataClient(config.metadata_url, transport=httpx.MockTransport(service.handle))
        agent = Agent(config, cast(Kernel, kernel), client)
        running = asyncio.create_task(agent.run())
        try:
            await until(lambda: allowed(kernel) == {8080}, "the first persona")
            yield kernel, service
        finally:
            kernel.facts.release.set()
            kernel.load.release.set()
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)


def allowed(kernel: HeldKernel) -> set[int]:
    """The TCP ports the persona's table lets in, read back from the kernel."""
    elements = kernel.inner.nft_set("allow_tcp") or []
    return {e for e in elements if isinstance(e, int)}


async def until(predicate: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE
    while loop.time() < end:
        if await asyncio.to_thread(predicate):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {DEADLINE}s waiting for {what}")


def test_a_pass_still_reading_facts_gives_way_to_a_newer_answer(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_agent(tmp_path) as (kernel, service):
            kernel.facts.arm()
            service.set_persona(8081, 2)
            # The pass for version 2 is reading the host's facts, and is held there.
            await until(kernel.facts.entered.is_set, "the pass for version 2")
            service.set_persona(8082, 3)
            # Version 3 reaches the kernel while version 2's pass is still held.
            await until(lambda: allowed(kernel) == {8082}, "version 3 in the kernel")
            assert not kernel.facts.release.is_set()
            assert not any("8081" in load for load in kernel.loads)
            kernel.facts.release.set()
            await asyncio.sleep(0.5)
            assert allowed(kernel) == {8082}  # the dropped pass changed nothing

    asyncio.run(scenario())


def test_a_pass_changing_the_kernel_ends_first_and_the_newest_plan_stays(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_agent(tmp_path) as (kernel, service):
            kernel.load.arm()
            service.set_persona(8084, 4)
            # The pass for version 4 is loading its nftables batch, and is held there.
            await until(kernel.load.entered.is_set, "the pass for version 4")
            service.set_persona(8085, 5)
            await asyncio.sleep(0.5)
            assert allowed(kernel) == {8080}  # nothing overtook the load in flight
            kernel.load.release.set()
            await until(lambda: allowed(kernel) == {8085}, "version 5 in the kernel")
            await asyncio.sleep(0.5)
            assert allowed(kernel) == {8085}
            loads = [n for n, load in enumerate(kernel.loads) if "8084" in load or "8085" in load]
            assert [("8085" in kernel.loads[n]) for n in loads] == [False, True]

    asyncio.run(scenario())
