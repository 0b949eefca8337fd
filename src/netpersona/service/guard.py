"""The request guard: a body's size is bounded, and its sender known, before it is read.

FastAPI reads and parses a request body before a route's dependencies run, so a body with no
credentials was read in full (and parsed) before it was refused. This ASGI middleware sits in
front of the routes and, for any request that carries a body:

1. looks up the route's limit in :data:`BODY_LIMITS` and refuses a larger ``Content-Length``
   at once (413);
2. checks who is calling (a valid bearer token under ``/v1/admin``; on the VM routes, that the
   source address belongs to an instance) and refuses a stranger (401/403) without reading;
3. reads the body, counting a chunked one as it arrives and stopping at the limit (413), within
   :data:`BODY_TIMEOUT` seconds (400: a body sent a byte at a time must not hold a request);
4. parses an API body (under ``/v1/``) as strict JSON (:mod:`netpersona.service.strict_json`;
   422 with a pointer) and hands the bytes on to the route, with the parsed document at
   ``scope["state"]`` (the console's form posts are parsed by their own routes).

A refusal before the body was read closes the connection, so the rest of the body is never
read. A request without a body (most of them: every GET an agent makes) passes straight on.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from netpersona.errors import NetpersonaError, PayloadTooLarge, UsageError
from netpersona.service.callers import SCOPE_TOKEN, admin_token, identify, source_address
from netpersona.service.context import ServiceContext
from netpersona.service.strict_json import parse_json, shown

__all__ = [
    "BODY_LIMITS",
    "BODY_TIMEOUT",
    "NO_BODY_LIMIT",
    "SCOPE_BODY",
    "BodyLimit",
    "RequestGuard",
    "limit_for",
]

KiB = 1024
MiB = 1024 * KiB

# Where the guard leaves the parsed body for routes that read the document themselves.
SCOPE_BODY = "netpersona.body"


@dataclass(frozen=True, slots=True)
class BodyLimit:
    methods: frozenset[str]
    path: str  # a route template: {name} is one path segment, a final /... anything below
    limit: int
    what: str

    @property
    def pattern(self) -> re.Pattern[str]:
        path = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(self.path))
        return re.compile("^" + path.replace(re.escape("/..."), "/.+") + "$")


def _limit(methods: str, path: str, limit: int, what: str) -> BodyLimit:
    return BodyLimit(frozenset(methods.split()), path, limit, what)


# The one table of request body limits (docs/reliability.md shows it; a test compares).
BODY_LIMITS: tuple[BodyLimit, ...] = (
    _limit("PUT", "/v1/admin/personas/{name}", 256 * KiB, "persona writes"),
    _limit("PUT", "/v1/admin/policy", 1 * MiB, "policy writes"),
    _limit("POST", "/v1/admin/policy/diff", 1 * MiB, "policy what-if"),
    _limit("POST PUT PATCH", "/v1/admin/...", 64 * KiB, "every other admin body"),
    _limit("POST", "/v1/instance/status", 64 * KiB, "VM status report"),
    _limit("POST", "/ui/...", 64 * KiB, "console forms"),
)
NO_BODY_LIMIT = 4 * KiB  # every route and method not in the table
BODY_TIMEOUT = 30.0  # seconds from the end of the header section to the end of the body

_COMPILED = tuple((entry, entry.pattern) for entry in BODY_LIMITS)


def limit_for(method: str, path: str) -> int:
    for entry, pattern in _COMPILED:
        if method in entry.methods and pattern.match(path):
            return entry.limit
    return NO_BODY_LIMIT


Responder = Callable[[BaseException, bool], ASGIApp]


class RequestGuard:
    """See the module docstring. ``respond(error, close)`` is the app's one error mapping."""

    def __init__(
        self, app: ASGIApp, respond: Responder, body_timeout: float = BODY_TIMEOUT
    ) -> None:
        self.app = app
        self.respond = respond
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
        if length is None and not chunked:
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read(scope, receive, length)
        except NetpersonaError as exc:
            # Unread body bytes may still be on the way: close rather than read them.
            await self.respond(exc, True)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read(self, scope: Scope, receive: Receive, length: bytes | None) -> bytes:
        limit = limit_for(scope["method"], scope["path"])
        if length is not None:
            text = length.decode("latin-1")
            if not (text.isascii() and text.isdigit() and len(text) <= 19):
                raise UsageError(f"Content-Length: {shown(text)} is not a length")
            if int(text) > limit:
                raise PayloadTooLarge(_too_large(scope, limit, f"{int(text)} bytes"))
            if int(text) == 0:
                return b""
        await self._authenticate(scope)
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await _receive_body(scope, receive, limit)
        except TimeoutError:
            raise UsageError(
                f"{scope['method']} {scope['path']}: the body did not arrive within "
                f"{self.body_timeout:g} s"
            ) from None
        # The API speaks JSON; the console's forms are form-encoded and parsed by their routes.
        if (
            body
            and scope["method"] in ("POST", "PUT", "PATCH")
            and scope["path"].startswith("/v1/")
        ):
            scope.setdefault("state", {})[SCOPE_BODY] = parse_json(body)
        return body

    async def _authenticate(self, scope: Scope) -> None:
        path: str = scope["path"]
        admin = path.startswith("/v1/admin")
        if not admin and not path.startswith(("/v1/instance", "/v1/token", "/v1/keys")):
            return  # a route with no caller to check (and a 4 KiB limit)
        ctx = scope["app"].state.netpersona
        assert isinstance(ctx, ServiceContext)
        headers = Headers(scope=scope)
        if admin:
            token = await admin_token(ctx, headers.get("authorization"))
            scope.setdefault("state", {})[SCOPE_TOKEN] = token
        else:
            await identify(ctx, source_address(scope, headers))


async def _receive_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(_too_large(scope, limit, "more"))
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _too_large(scope: Scope, limit: int, size: str) -> str:
    return (
        f"{scope['method']} {scope['path']}: the body ({size}) is larger than this route's "
        f"limit of {limit} bytes"
    )
