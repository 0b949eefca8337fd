"""The VM view GETs, answered in front of the middleware stack.

``GET /v1/instance``, ``/v1/instance/network_persona``, ``/v1/instance/peers``,
``/v1/instance/certificate`` and ``/v1/keys`` (plain, conditional and long-poll) are what every
agent asks all the time, and a change wakes thousands of them at once. :class:`FastViews` is
the outermost ASGI layer: it answers these requests itself when they are well-formed and their
caller checks out (source address of a known instance, valid session token, no forwarding
header, no body), and hands everything else, unchanged, to the full application, whose routes
(:mod:`netpersona.service.vm_api`) give the same answers and every error. So the two paths can
only differ in speed.

Answers are prepared once per distinct view (:class:`Answer`, keyed by the view's ETag, which is
a hash of its content): the status line, headers and body bytes. A long poll waits in the
change notifier with a delivery callback; when a change is published, the notifier calls it and
the answer is written to the socket right there (:class:`~netpersona.service.connections.
WholeResponse`, one write), before the request's task even runs again. Under a server without
that extension (the in-process test client) the same answer goes through ASGI ``send``.

Requests answered here are counted in the same metrics, with the same labels, as the routes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

import structlog
from prometheus_client.metrics import Counter, Histogram
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from netpersona.errors import NetpersonaError, NotFound
from netpersona.service.auth import FORWARDING_HEADERS, TOKEN_HEADER, canonical_address
from netpersona.service.connections import WHOLE_RESPONSE, WholeResponse
from netpersona.service.context import ServiceContext
from netpersona.service.metrics import ServiceMetrics
from netpersona.service.notifier import ChangeNotifier
from netpersona.service.views import View, ViewKind, WatchKey, normalize_etag
from netpersona.service.vm_api import REVISION_HEADER, Watch, reach

__all__ = ["VIEW_PATHS", "Answer", "FastViews", "answer_for"]

VIEW_PATHS: dict[str, ViewKind] = {
    "/v1/instance": ViewKind.INSTANCE,
    "/v1/instance/network_persona": ViewKind.PERSONA,
    "/v1/instance/peers": ViewKind.PEERS,
    "/v1/instance/certificate": ViewKind.CERTIFICATE,
    "/v1/keys": ViewKind.KEYS,
}

log = structlog.get_logger("netpersona.service")

_TOKEN = TOKEN_HEADER.lower().encode()
_REVISION = REVISION_HEADER.lower().encode()
_FALL_BACK = frozenset(
    [*(name.encode() for name in FORWARDING_HEADERS), b"content-length", b"transfer-encoding"]
)


@dataclass(frozen=True, slots=True)
class Answer:
    """One response, ready to send: as ASGI messages' fields and as HTTP/1.1 bytes.

    Shared by every request for the same view, so without the one header that depends on
    the fleet view it was taken from, the revision: :meth:`head_at` and :meth:`headers_at`
    add it per send."""

    status: int
    headers: list[tuple[bytes, bytes]]
    head: bytes  # status line and header lines, each ending in CRLF; no blank line
    body: bytes

    def head_at(self, revision: int) -> bytes:
        return b"%s%s: %d\r\n" % (self.head, _REVISION, revision)

    def headers_at(self, revision: int) -> list[tuple[bytes, bytes]]:
        return [*self.headers, (_REVISION, b"%d" % revision)]


def _answer(status: int, phrase: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> Answer:
    head = b"HTTP/1.1 %d %s\r\n" % (status, phrase)
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return Answer(status, headers, head, body)


_answers: dict[tuple[int, str], Answer] = {}
_MAX_ANSWERS = 16384


def answer_for(view: View, not_modified: bool = False) -> Answer:
    """The 200 (or 304) answer for ``view``: the same bytes as the route's ``Response``
    (application/json, ETag, Cache-Control: no-store), built once per ETag."""
    key = (304 if not_modified else 200, view.etag)
    found = _answers.get(key)
    if found is not None:
        return found
    etag = view.etag.encode()
    if not_modified:
        found = _answer(304, b"Not Modified", [(b"etag", etag)], b"")
    else:
        headers = [
            (b"content-length", b"%d" % len(view.body)),
            (b"content-type", b"application/json"),
            (b"etag", etag),
            (b"cache-control", b"no-store"),
        ]
        found = _answer(200, b"OK", headers, view.body)
    if len(_answers) >= _MAX_ANSWERS:  # distinct answers in flight are few; stay bounded
        _answers.clear()
    _answers[key] = found
    return found


class _Delivery:
    """The notifier's callback for one waiting long poll: writes the new view's answer."""

    __slots__ = ("notifier", "sent", "writer")

    def __init__(self, writer: WholeResponse, notifier: ChangeNotifier) -> None:
        self.writer = writer
        self.notifier = notifier
        self.sent = False

    def __call__(self, view: View | None) -> None:
        if view is not None:  # a deleted instance gets the error body, from the task
            answer = answer_for(view)
            # Called from publish, once the published fleet view is current.
            head = answer.head_at(self.notifier.view.revision)
            self.sent = self.writer.send(head, answer.body)


_Metrics = tuple["Counter", "Histogram"]


class FastViews:
    """See the module docstring. ``respond`` maps an error to its response (app.py's)."""

    def __init__(
        self, app: ASGIApp, respond: Callable[[BaseException], Response], metrics: ServiceMetrics
    ) -> None:
        self.app = app
        self.respond = respond
        self.metrics = metrics
        self._metrics: dict[tuple[str, int, bool], _Metrics] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        kind = VIEW_PATHS.get(scope["path"])
        if kind is None:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        token = if_none_match = None
        for name, value in scope["headers"]:
            if name == _TOKEN:
                token = token or value.decode("latin-1")
            elif name == b"if-none-match":
                if_none_match = if_none_match or value.decode("latin-1")
            elif name in _FALL_BACK:
                await self.app(scope, receive, send)
                return
        ctx = scope["app"].state.netpersona
        assert isinstance(ctx, ServiceContext)
        client = scope.get("client")
        try:
            if not client:
                raise NotFound("no source address")  # the full app says why
            address = canonical_address(str(client[0]))
            instance = ctx.fleet.view.instance_for_address(address)
            if instance is None:
                raise NotFound(address)
            ctx.sessions.check(token, address, instance.id)
            query = dict(parse_qsl(scope["query_string"].decode("latin-1"), True))
            watch = Watch.parse(query, if_none_match)
        except NetpersonaError:
            await self.app(scope, receive, send)  # the routes give the error, in full
            return
        try:
            status = await self._serve(scope, receive, send, ctx, (kind, instance.id), watch)
        except Exception as exc:  # as ErrorBoundary does for the routes
            log.exception("request failed", method="GET", path=scope["path"])
            response = self.respond(exc)
            with contextlib.suppress(Exception):  # a response was started: nothing to do
                await response(scope, receive, send)
            status = response.status_code
        # The label as MetricsMiddleware gives it to the same request.
        watching = b"wait_for_change=true" in scope["query_string"]
        counter, latency = self._metric(scope["path"], status, watching)
        counter.inc()
        latency.observe(time.perf_counter() - start)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        ctx: ServiceContext,
        key: WatchKey,
        watch: Watch,
    ) -> int:
        await reach(ctx, watch)
        if key[0] is ViewKind.CERTIFICATE:
            await ctx.fleet.fresh_certificate(key[1])
        fleet_view = ctx.fleet.view
        revision = fleet_view.revision
        current = fleet_view.view(key)
        writer = scope.get("extensions", {}).get(WHOLE_RESPONSE)
        view: View | None
        if not watch.wait_for_change:
            view = current
            not_modified = (
                current is not None
                and watch.if_none_match is not None
                and normalize_etag(watch.if_none_match) == current.etag
            )
            sent = False
        else:
            # GCE semantics: without last_etag, wait for the next change from now.
            if watch.last_etag:
                etag = normalize_etag(watch.last_etag)
            else:
                etag = current.etag if current is not None else ""
            notifier = ctx.fleet.notifier
            delivery = _Delivery(writer, notifier) if isinstance(writer, WholeResponse) else None
            view = await notifier.wait(key, etag, float(watch.timeout_sec), delivery)
            revision = ctx.fleet.view.revision  # as the route gives it
            not_modified = False
            sent = delivery is not None and delivery.sent
        if view is None:
            response = self.respond(NotFound("this instance was deleted"))
            await response(scope, receive, send)
            status = response.status_code
        else:
            answer = answer_for(view, not_modified)
            status = answer.status
            if not sent:
                await _send(answer, revision, writer, send)
        return status

    def _metric(self, route: str, status: int, watch: bool) -> _Metrics:
        found = self._metrics.get((route, status, watch))
        if found is None:
            metrics = self.metrics
            found = (
                metrics.requests.labels(route, "GET", str(status)),
                metrics.latency.labels(route, "GET", "true" if watch else "false"),
            )
            self._metrics[(route, status, watch)] = found
        return found


async def _send(answer: Answer, revision: int, writer: object, send: Send) -> None:
    if isinstance(writer, WholeResponse) and writer.send(answer.head_at(revision), answer.body):
        return
    headers = answer.headers_at(revision)
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
