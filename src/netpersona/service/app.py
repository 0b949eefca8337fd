"""The ASGI application: VM-facing API, admin API, ``/metrics``, and one error mapping.

Every :class:`~netpersona.errors.NetpersonaError` becomes ``{"error": {"code", "message",
"errors"?}}`` with the error's ``http_status``, here and nowhere else (:func:`error_response`);
FastAPI's own request validation errors are given the same shape, with RFC 6901 pointers into
the request body. Any other exception becomes the same body with code ``error`` and status 500
(and is logged), never the framework's bare text: :class:`ErrorBoundary` catches whatever the
routes and the request guard let through.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import anyio.to_thread
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from netpersona.errors import FieldError, InvalidDocument, NetpersonaError
from netpersona.model.parse import escape_pointer
from netpersona.service import admin, health, vm_api
from netpersona.service.auth import SessionTokens
from netpersona.service.certificates import DEFAULT_LIFETIME, CertificateAuthority
from netpersona.service.console.mount import mount_console
from netpersona.service.context import ServiceContext
from netpersona.service.fast_views import FastViews
from netpersona.service.fleet import Fleet
from netpersona.service.guard import RequestGuard
from netpersona.service.keyring import KeyRing, KeySource, StaticKeys
from netpersona.service.metrics import MetricsMiddleware, ServiceMetrics
from netpersona.service.replication import ChangeFollower, Replicated
from netpersona.service.views import PersonaResolver
from netpersona.service.write_timing import WriteTimingMiddleware
from netpersona.store.base import Store

__all__ = ["ErrorBoundary", "create_app", "error_response", "renew_interval"]

log = structlog.get_logger("netpersona.service")

# The change sequence (what replicas catch up from) is pruned every PRUNE_INTERVAL seconds of
# what is older than KEEP_CHANGES_FOR seconds and beyond the newest KEEP_CHANGES. A replica
# that was away longer reads the whole fleet when it comes back, as at its start.
PRUNE_INTERVAL = 600.0
KEEP_CHANGES_FOR = 3600.0
KEEP_CHANGES = 10_000

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}


def _text(text: str) -> str:
    # A message may quote what the client sent; the answer must still be valid UTF-8.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _error(
    status: int,
    code: str,
    message: str,
    errors: Sequence[FieldError] = (),
    close: bool = False,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": _text(message)}
    if errors:
        body["errors"] = [
            {"pointer": _text(e.pointer), "message": _text(e.message)} for e in errors
        ]
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if close:
        headers["Connection"] = "close"
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def error_response(exc: BaseException, close: bool = False) -> JSONResponse:
    """The one mapping of an exception to the API's error body; ``close`` ends the connection
    (the request's body was not read)."""
    if isinstance(exc, NetpersonaError):
        errors = exc.errors if isinstance(exc, InvalidDocument) else ()
        return _error(exc.http_status, exc.code, str(exc), errors, close)
    return _error(
        500,
        NetpersonaError.code,
        "the service failed to answer this request; the cause is in its log",
        close=close,
    )


class ErrorBoundary:
    """Whatever escapes the routes becomes the documented error body (if nothing was sent
    yet); an unexpected exception is logged with its traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if not isinstance(exc, NetpersonaError):
                log.exception("request failed", method=scope["method"], path=scope["path"])
            if started:
                raise
            await error_response(exc, close=True)(scope, receive, send)


def _pointer(location: Sequence[int | str]) -> str:
    parts = list(location)
    if parts and parts[0] in ("body", "query", "header", "path"):
        where = parts.pop(0)
        if where != "body":
            return "/" + "/".join(escape_pointer(str(p)) for p in parts) if parts else ""
    return "".join("/" + escape_pointer(str(p)) for p in parts)


def renew_interval(lifetime: int) -> float:
    """How often certificates are checked for renewal and the key file for a change: often
    enough that a certificate is re-issued well before the last third of its lifetime ends."""
    return max(0.5, min(5.0, lifetime / 10))


def create_app(
    store: Store,
    *,
    resolver: PersonaResolver | None = None,
    clock: Callable[[], float] = time.time,
    keys: KeySource | None = None,
    certificate_lifetime: int = DEFAULT_LIFETIME,
) -> FastAPI:
    """The service over ``store``. The caller owns the store (and closes it).

    ``keys``: where the certificate signing keys come from (``KeyFile`` in the data
    directory); without it, one key is made and kept in memory only.
    """
    authority = CertificateAuthority(
        store,
        keys if keys is not None else StaticKeys(KeyRing.generate(clock())),
        lifetime=certificate_lifetime,
        clock=clock,
    )
    fleet = Fleet(store, resolver, authority=authority)
    interval = renew_interval(certificate_lifetime)
    follower = ChangeFollower(fleet, store.listener) if isinstance(store, Replicated) else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def renew_forever() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await fleet.renew()
                except Exception:  # a bad key file or a busy disk must not stop renewals
                    log.exception("certificate renewal failed")

        async def prune_forever() -> None:
            while True:
                await asyncio.sleep(PRUNE_INTERVAL)
                try:
                    await anyio.to_thread.run_sync(
                        store.prune_changes, KEEP_CHANGES, clock() - KEEP_CHANGES_FOR
                    )
                except Exception:  # a busy database: the next round prunes
                    log.exception("pruning the change sequence failed")

        task = asyncio.create_task(renew_forever())
        pruner = asyncio.create_task(prune_forever())
        try:
            if follower is None:
                yield
            else:
                async with follower.running():
                    yield
        finally:
            for running in (task, pruner):
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running

    app = FastAPI(
        title="netpersona metadata service",
        version="1",
        description=(
            "VMs ask for their network persona (identity = source address + session token); "
            "operators manage instances, personas, pins and context under /v1/admin."
        ),
        lifespan=lifespan,
    )
    metrics = ServiceMetrics(fleet.notifier.waiting)
    fleet.notifier.on_wake = metrics.woke
    app.state.netpersona = ServiceContext(
        store=store,
        fleet=fleet,
        sessions=SessionTokens(store.secret("session-tokens"), clock),
        metrics=metrics,
        follower=follower,
    )
    app.include_router(health.router)
    app.include_router(vm_api.router)
    app.include_router(admin.router)
    mount_console(app)
    # Outermost last: metrics see every answer, including the guard's and the boundary's.
    app.add_middleware(RequestGuard, respond=error_response)
    app.add_middleware(ErrorBoundary)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    # In front of everything: the VM view GETs, the hot path (it counts its own metrics).
    app.add_middleware(FastViews, respond=error_response, metrics=metrics)
    app.add_middleware(WriteTimingMiddleware)  # where an admin write's time went, all of it

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        # On the event loop, not a worker thread: the watcher gauges read loop-owned state.
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(NetpersonaError)
    async def netpersona_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [FieldError(_pointer(e.get("loc", ())), str(e.get("msg"))) for e in exc.errors()]
        return _error(422, InvalidDocument.code, "; ".join(str(e) for e in errors), errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return _error(exc.status_code, _HTTP_CODES.get(exc.status_code, "error"), str(exc.detail))

    return app
