"""A plan that fails to apply (and is rolled back) is not tried again and again: the same plan
waits 5 s, then 10 s, ... up to 5 min; a new answer is tried at once. Against a real kernel in a
throwaway namespace whose nftables loads are made to fail."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from netpersona.agent.backoff import RetryGate
from netpersona.agent.client import MetadataClient, Watched
from netpersona.agent.runner import Agent, AgentConfig
from netpersona.dataplane.kernel import Kernel, LinuxKernel
from netpersona.errors import KernelError
from netpersona.system.netns import Netns
from netpersona.testing.netns import netns

pytestmark = pytest.mark.kernel

INSTANCE = {"id": "vm1", "interfaces": [{"name": "eth0", "tier": None}]}


def persona(port: int, version: int) -> dict[str, Any]:
    return {
        "assigned": True,
        "name": "web",
        "version": version,
        "overlays": [],
        "digest": f"d{version}",
        "network_persona": {
            "communication_mode": "unicast",
            "security_profile": "medium",
            "allowed_protocols": [f"tcp/{port}"],
            "priority": 3,
        },
    }


class NftRefuses:
    """A kernel whose every nftables load fails; everything else reaches the real kernel."""

    def __init__(self, inner: LinuxKernel) -> None:
        self.inner = inner
        self.loads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def nft_load(self, document: object) -> None:
        self.loads += 1
        raise KernelError("nft: the kernel refused the table (made to fail by the test)")


@contextlib.contextmanager
def agent_on_a_veth(
    tmp_path: Path, service: Callable[[httpx.Request], httpx.Response], *addresses: str
) -> Iterator[tuple[Netns, NftRefuses, Agent]]:
    """A namespace with an uplink (eth0, a veth) holding ``addresses``, and an agent for it
    whose nftables loads fail and whose metadata service is ``service``."""
    with netns("npretry") as ns:
        ns.run(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"])
        for address in addresses:
            # No duplicate address detection: an IPv6 address is usable at once.
            flags = ["nodad"] if ":" in address else []
            ns.run(["ip", "addr", "add", address, "dev", "eth0", *flags])
        for link in ("eth0", "eth0p"):
            ns.run(["ip", "link", "set", link, "up"])
        kernel = NftRefuses(LinuxKernel(ns.name))
        config = AgentConfig("http://127.0.0.1:8169", tmp_path, gossip=False)
        client = MetadataClient(config.metadata_url, transport=httpx.MockTransport(service))
        yield ns, kernel, Agent(config, cast(Kernel, kernel), client)


def test_the_same_failed_plan_backs_off_and_a_new_one_goes_at_once(tmp_path: Path) -> None:
    reports: list[dict[str, Any]] = []

    def service(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            return httpx.Response(200, content=b"tok")
        reports.append(json.loads(request.content))
        return httpx.Response(204)

    with agent_on_a_veth(tmp_path, service, "10.77.0.11/24") as (ns, kernel, agent):
        now = 0.0
        agent.reconciler.clock = lambda: now
        agent.latest = {
            "instance": Watched(INSTANCE, '"i1"'),
            "persona": Watched(persona(8080, 1), '"p1"'),
            "peers": Watched({"peers": []}, '"v1"'),
        }
        # Wakes every 100 ms for 10 s (the old agent tried about four times in 10 s).
        for tenth in range(100):
            now = tenth / 10
            asyncio.run(agent.reconcile())
        assert kernel.loads == 2  # at 0 s and 5 s; the next waits until 15 s
        record = json.loads((tmp_path / "agent.json").read_text())
        assert record["result"] == "failed"
        assert "made to fail" in record["error"]
        assert record["retry_at"] is not None
        assert reports[-1]["result"] == "failed"
        assert ns.run(["nft", "list", "tables"]).stdout.strip() == ""  # rolled back

        # A new answer is a new plan: tried at once.
        agent.latest["persona"] = Watched(persona(9090, 2), '"p2"')
        asyncio.run(agent.reconcile())
        assert kernel.loads == 3
        # And the same again later, after its own first wait.
        now += 4.9
        asyncio.run(agent.reconcile())
        assert kernel.loads == 3
        now += 0.2
        asyncio.run(agent.reconcile())
        assert kernel.loads == 4


def test_the_running_agent_wakes_for_a_retry_and_does_not_spin(tmp_path: Path) -> None:
    answers = {
        "/v1/instance": INSTANCE,
        "/v1/instance/network_persona": persona(8080, 1),
        "/v1/instance/peers": {"peers": []},
    }

    def service(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            return httpx.Response(200, content=b"tok")
        if request.method == "POST":
            return httpx.Response(204)
        return httpx.Response(200, json=answers[request.url.path], headers={"ETag": '"e"'})

    async def run_for(agent: Agent, seconds: float) -> None:
        task = asyncio.create_task(agent.run())
        await asyncio.sleep(seconds)
        assert not task.done(), "the agent stopped"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with agent_on_a_veth(tmp_path, service, "10.77.0.11/24") as (_, kernel, agent):
        # Short waits, so a few retries fit in the test: 0.5 s, 1 s, 1 s, ...
        agent.reconciler.retry = RetryGate(base=0.5, cap=1.0)
        asyncio.run(run_for(agent, 4.0))
        # Tried at 0, ~0.5, ~1.5, ~2.5, ~3.5 s: retried without news, and never in a loop.
        assert 3 <= kernel.loads <= 6, kernel.loads


def test_a_persona_the_uplink_cannot_take_is_rejected_and_the_agent_goes_on(
    tmp_path: Path,
) -> None:
    """An MTU below 1280 on an uplink with IPv6 is refused by the compiler (it would take IPv6
    away): the agent reports the persona as rejected, names the field, applies nothing and
    keeps running (it used to leave the reconcile pass with the compiler's error)."""

    def service(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            return httpx.Response(200, content=b"tok")
        return httpx.Response(204)

    with agent_on_a_veth(tmp_path, service, "10.77.0.11/24", "fd00:77::11/64") as (
        _,
        kernel,
        agent,
    ):
        small_mtu = persona(8080, 1)
        small_mtu["network_persona"]["qos_parameters"] = {"mtu": 1200}
        agent.latest = {
            "instance": Watched(INSTANCE, '"i1"'),
            "persona": Watched(small_mtu, '"p1"'),
            "peers": Watched({"peers": []}, '"v1"'),
        }
        asyncio.run(agent.reconcile())
        asyncio.run(agent.reconcile())
        assert kernel.loads == 0
        record = json.loads((tmp_path / "agent.json").read_text())
        assert record["result"] == "rejected"
        assert "/qos_parameters/mtu" in record["error"]
        assert "1200" in record["error"]
