"""sd_notify: datagrams a real AF_UNIX socket receives, as systemd's would."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from netpersona.agent.reconcile import Inputs
from netpersona.agent.runner import Agent, AgentConfig
from netpersona.dataplane.kernel import Kernel
from netpersona.system.sdnotify import Notifier
from tests.agent.test_watch import INSTANCE, URL, client


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(10)
    yield sock, str(path)
    sock.close()


def received(sock: socket.socket) -> list[str]:
    """Every datagram waiting on the socket now."""
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        return messages
    finally:
        sock.settimeout(10)


def test_ready_is_sent_once(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    notifier.ready()
    notifier.ready()
    assert received(sock) == ["READY=1"]


def test_an_abstract_socket_name_is_reached() -> None:
    name = f"netpersona-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).send("READY=1")
        assert sock.recv(4096) == b"READY=1"


def test_outside_systemd_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    assert not Notifier({}).send("READY=1")
    # A socket that went away (systemd restarted) is logged, not raised.
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).send("READY=1")


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "4000000"}, 4.0),
        ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "77"}, 4.0),
        ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "78"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], interval: float | None) -> None:
    assert Notifier({"NOTIFY_SOCKET": "/run/x", **env}, pid=77).watchdog_interval == interval


def test_keep_alive_sends_watchdog_every_half_interval(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})

    async def run_for_a_while() -> None:
        task = asyncio.create_task(notifier.keep_alive())
        await asyncio.sleep(0.5)
        task.cancel()

    asyncio.run(run_for_a_while())
    messages = received(sock)
    assert len(messages) >= 2
    assert set(messages) == {"WATCHDOG=1"}


def test_the_agent_is_ready_after_its_first_successful_pass(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    """READY=1 waits for a pass that leaves the persona in force, and is sent once."""
    sock, path = notify_socket
    answers: dict[str, dict[str, Any]] = {
        "/v1/instance": INSTANCE,
        "/v1/instance/network_persona": {
            "assigned": True,
            "name": "web",
            "version": 1,
            "overlays": [],
            "digest": "d1",
            "network_persona": {"communication_mode": "unicast"},
        },
        "/v1/instance/peers": {"peers": []},
    }

    async def get(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answers[request.url.path], headers={"ETag": '"e"'})

    async def scenario() -> list[list[str]]:
        config = AgentConfig(URL, tmp_path, gossip=False, drift_interval=3600)
        agent = Agent(config, cast(Kernel, object()), client(get))
        agent.systemd = Notifier({"NOTIFY_SOCKET": path})
        outcomes = iter(["failed", "applied", "unchanged"])
        passes = asyncio.Event()

        async def reconcile(_inputs: Inputs, _superseded: object = None) -> None:
            agent.record.result = next(outcomes)
            passes.set()

        agent.reconciler.reconcile = reconcile  # type: ignore[method-assign, assignment]
        running = asyncio.create_task(agent.run())
        seen = []
        for _ in range(3):
            await asyncio.wait_for(passes.wait(), 10)
            passes.clear()
            await asyncio.sleep(0.05)
            seen.append(received(sock))
            agent.dirty.set()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        return seen

    assert asyncio.run(scenario()) == [[], ["READY=1"], []]
