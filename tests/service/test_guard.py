"""The request guard on its own: a body that stops arriving does not hold the request."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.types import Message, Receive, Scope, Send

from netpersona.service.app import error_response
from netpersona.service.guard import RequestGuard

pytestmark = pytest.mark.anyio


async def test_a_body_that_stops_arriving_is_refused_after_the_body_timeout() -> None:
    reached = False

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal reached
        reached = True

    sent: list[Message] = []
    first = True

    async def receive() -> Message:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b'{"x": ', "more_body": True}
        await asyncio.sleep(3600)  # the client stopped sending
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/somewhere",
        "headers": [(b"content-length", b"100")],
    }
    guard = RequestGuard(app, respond=error_response, body_timeout=0.2)
    await asyncio.wait_for(guard(scope, receive, send), timeout=30)
    assert not reached
    assert sent[0]["status"] == 400
    assert (b"connection", b"close") in sent[0]["headers"]
    error = json.loads(sent[1]["body"])["error"]
    assert error["code"] == "usage_error"
    assert "did not arrive within 0.2 s" in error["message"]
