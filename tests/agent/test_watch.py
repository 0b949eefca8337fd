"""The client and the watchers against a service that misbehaves, in process (httpx transports):
size caps while streaming, the per-request deadline, tokens that cannot go in a header, pacing
when long-poll is ignored, and loops that outlive every exception."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from itertools import pairwise
from pathlib import Path
from typing import Any, ParamSpec, cast

import httpx
import pytest

from netpersona.agent.client import ANSWER_LIMIT, MetadataClient, Watched
from netpersona.agent.runner import Agent, AgentConfig
from netpersona.agent.status import StatusRecord
from netpersona.agent.watch import (
    MIN_INTERVAL,
    UNPACED_BURST,
    UNPACED_PER_SECOND,
    VIEWS,
    View,
    Watcher,
)
from netpersona.dataplane.kernel import Kernel
from netpersona.errors import MalformedAnswer, MetadataUnavailable

URL = "http://169.254.169.254"
P = ParamSpec("P")


def synchronous(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Run an async test in its own event loop (pytest sees the same parameters)."""

    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


INSTANCE: dict[str, Any] = {"id": "vm1", "interfaces": []}
Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def service(get: Handler, token: bytes = b"tok") -> httpx.MockTransport:
    async def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            return httpx.Response(200, content=token)
        return await get(request)

    return httpx.MockTransport(handle)


def client(get: Handler, *, timeout: float = 10.0, deadline_margin: float = 30.0) -> MetadataClient:
    return MetadataClient(
        URL, transport=service(get), timeout=timeout, deadline_margin=deadline_margin
    )


@synchronous
async def test_an_endless_answer_is_cut_off_at_the_cap() -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"x": "'
        while sent < 200 << 20:
            sent += 65536
            yield b"a" * 65536

    async def get(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    with pytest.raises(MalformedAnswer, match=f"more than {ANSWER_LIMIT} bytes"):
        await client(get).get("/v1/instance")
    assert sent <= ANSWER_LIMIT + 65536  # it stopped reading there


@synchronous
async def test_a_declared_oversize_answer_is_not_read_at_all() -> None:
    async def get(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"{}", headers={"Content-Length": str(300 << 20)})

    with pytest.raises(MalformedAnswer, match="an answer of 314572800 bytes"):
        await client(get).get("/v1/instance")


@synchronous
async def test_the_peer_view_may_be_larger() -> None:
    big = json.dumps({"peers": [{"addresses": ["10.0.0.1"]}] * 60000}).encode()
    assert len(big) > ANSWER_LIMIT

    async def get(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=big)

    answer = await client(get).get("/v1/instance/peers", limit=VIEWS["peers"].limit)
    assert len(answer.body["peers"]) == 60000


@synchronous
async def test_a_drip_is_cut_off_by_the_deadline() -> None:
    async def drip() -> AsyncIterator[bytes]:
        for _ in range(1000):
            yield b" "
            await asyncio.sleep(0.1)

    async def get(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=drip())

    with pytest.raises(MetadataUnavailable, match=r"no complete answer within 0\.5s"):
        await client(get, deadline_margin=0.5).get("/v1/instance")


@synchronous
async def test_a_token_that_is_not_ascii_never_reaches_a_header() -> None:
    seen: list[httpx.Request] = []

    async def get(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=INSTANCE)

    metadata = MetadataClient(URL, transport=service(get, "t\u00f6k\u00e9n".encode()))
    with pytest.raises(MalformedAnswer, match="not printable ASCII"):
        await metadata.get("/v1/instance")
    assert seen == []


class FakeTime:
    """A clock that only sleeping moves, so a test can count requests per second of it."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


async def run_for(watcher: Watcher, time: FakeTime, seconds: float) -> None:
    task = asyncio.create_task(watcher.run())
    while time.now < seconds and not task.done():
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def watcher(
    view: View, metadata: MetadataClient, status: StatusRecord, time: FakeTime
) -> tuple[Watcher, list[Watched]]:
    taken: list[Watched] = []

    async def on_answer(name: str, answer: Watched, changed: bool) -> None:
        taken.append(answer)

    made = Watcher(
        view,
        metadata,
        status,
        on_answer,
        wait=300,
        backoff_cap=30,
        sleep=time.sleep,
        clock=time.clock,
    )
    return made, taken


@synchronous
async def test_an_ignored_long_poll_is_paced_to_two_requests_a_second(tmp_path: Path) -> None:
    requests = 0

    async def get(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        # Answers at once, unchanged, whatever wait_for_change asked for.
        return httpx.Response(200, json=INSTANCE, headers={"ETag": '"e1"'})

    time = FakeTime()
    made, taken = watcher(VIEWS["instance"], client(get), StatusRecord(tmp_path), time)
    await run_for(made, time, 10.0)
    assert 10 <= requests <= 21  # the old agent: about 5,000 in 10 s
    assert len(taken) == requests


@synchronous
async def test_a_long_poll_always_answering_a_change_is_metered(
    tmp_path: Path,
) -> None:
    requests = 0

    async def get(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        # Answers at once, with a new ETag every time: each answer is a change.
        return httpx.Response(200, json=INSTANCE, headers={"ETag": f'"e{requests}"'})

    time = FakeTime()
    made, taken = watcher(VIEWS["instance"], client(get), StatusRecord(tmp_path), time)
    await run_for(made, time, 10.0)
    # A burst, then at most UNPACED_PER_SECOND a second (the old agent: about 5,000 in 10 s).
    assert 30 <= requests <= UNPACED_BURST + 10 * UNPACED_PER_SECOND + 1
    assert len(taken) == requests


@synchronous
async def test_requests_after_changes_are_not_paced(tmp_path: Path) -> None:
    asked: list[float] = []
    time = FakeTime()

    async def get(request: httpx.Request) -> httpx.Response:
        asked.append(time.now)
        # A change in each of the first three answers (made right after the one before),
        # then none.
        return httpx.Response(200, json=INSTANCE, headers={"ETag": f'"e{min(len(asked), 3)}"'})

    made, _ = watcher(VIEWS["instance"], client(get), StatusRecord(tmp_path), time)
    await run_for(made, time, 3.0)
    assert asked[3] - asked[0] < MIN_INTERVAL / 2  # each change: asked again at once
    assert all(b - a >= MIN_INTERVAL * 0.99 for a, b in pairwise(asked[3:]))


@synchronous
async def test_a_quick_run_of_changes_is_followed_change_by_change(tmp_path: Path) -> None:
    """A service that honours long-poll and changes the view 16 times a second for 4 s (an
    operator scripting changes): every change is taken when it is made, none waits for the
    pacing of unchanged answers."""
    period, changes = 0.0625, 64
    time = FakeTime()
    lag: list[float] = []

    async def get(request: httpx.Request) -> httpx.Response:
        made = min(int(time.now / period), changes)  # the number of the newest change
        if request.url.params.get("last_etag") == f'"e{made}"' and made < changes:
            await time.sleep((made + 1) * period - time.now)  # held until the next change
            made += 1
        if request.url.params.get("last_etag") != f'"e{made}"':
            lag.append(time.now - made * period)  # how long the change waited to be taken
        return httpx.Response(200, json=INSTANCE, headers={"ETag": f'"e{made}"'})

    made, taken = watcher(VIEWS["instance"], client(get), StatusRecord(tmp_path), time)
    await run_for(made, time, changes * period + 1)
    assert {t.etag for t in taken} >= {f'"e{n}"' for n in range(1, changes + 1)}
    assert max(lag) < period / 2, f"a change waited {max(lag):.3f}s"


@synchronous
async def test_a_watch_outlives_every_exception_and_says_so(tmp_path: Path) -> None:
    failure: list[Exception] = []

    async def get(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=INSTANCE)

    def check(body: object) -> None:
        if failure:
            raise failure[0]

    time = FakeTime()
    status = StatusRecord(tmp_path, clock=time.clock)
    view = View("instance", "/v1/instance", check)
    made, taken = watcher(view, client(get), status, time)
    for exc in (RecursionError("maximum recursion depth"), TypeError("'int' is not iterable")):
        failure[:] = [exc]
        await run_for(made, time, time.now + 60)
        record = json.loads((tmp_path / "agent.json").read_text())
        assert record["watches"]["instance"]["state"] == "failing"
        assert record["watches"]["instance"]["error"]["code"] == "unexpected_error"
        assert record["result"] == "refused"
        assert record["service"] == "malformed"
        # It kept asking, backing off: a few tries a minute, not a busy loop.
        assert 3 <= record["watches"]["instance"]["failures"] <= 30
    failure.clear()
    await run_for(made, time, time.now + 60)
    record = json.loads((tmp_path / "agent.json").read_text())
    assert record["watches"]["instance"]["state"] == "ok"
    assert record["service"] == "reachable"
    assert taken


@synchronous
async def test_a_refused_answer_is_not_taken(tmp_path: Path) -> None:
    body: dict[str, Any] = INSTANCE

    async def get(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body)

    time = FakeTime()
    made, taken = watcher(VIEWS["instance"], client(get), StatusRecord(tmp_path), time)
    await made.step()
    body = {"id": "vm1", "interfaces": 5}
    with pytest.raises(MalformedAnswer):
        await made.step()
    assert made.last is not None
    assert made.last.body == INSTANCE
    assert [t.body for t in taken] == [INSTANCE]


class BrokenKernel:
    """A kernel that cannot be read at all (every call raises something outside the tree)."""

    def __getattr__(self, name: str) -> Any:
        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError(f"{name}: the kernel cannot be read")

        return broken


@synchronous
async def test_a_pass_that_raises_is_reported_and_the_agent_goes_on(tmp_path: Path) -> None:
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

    config = AgentConfig(URL, tmp_path, gossip=False, drift_interval=3600)
    agent = Agent(config, cast(Kernel, BrokenKernel()), client(get))
    running = asyncio.create_task(agent.run())
    for _ in range(100):
        await asyncio.sleep(0.05)
        if agent.record.result == "failed":
            break
    assert not running.done(), "the agent stopped"
    record = json.loads((tmp_path / "agent.json").read_text())
    assert record["result"] == "failed"
    assert "RuntimeError" in record["error"]
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
