"""The ASGI application: VM-facing API, admin API, ``/metrics``, and one error mapping.

Every :class:`~netpersona.errors.NetpersonaError` becomes ``{"error": {"code", "message",
"errors"?}}`` with the error's ``http_status``, here and nowhere else; FastAPI's own request
validation errors are given the same shape, with RFC 6901 pointers into the request body.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from netpersona.errors import FieldError, InvalidDocument, NetpersonaError
from netpersona.model.parse import escape_pointer
from netpersona.service import admin_api, vm_api
from netpersona.service.auth import SessionTokens
from netpersona.service.certificates import DEFAULT_LIFETIME, CertificateAuthority
from netpersona.service.console.mount import mount_console
from netpersona.service.context import ServiceContext
from netpersona.service.fleet import Fleet
from netpersona.service.keyring import KeyRing, KeySource, StaticKeys
from netpersona.service.metrics import MetricsMiddleware, ServiceMetrics
from netpersona.service.views import PersonaResolver
from netpersona.store.base import Store

__all__ = ["create_app", "renew_interval"]

log = structlog.get_logger("netpersona.service")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}


def _error(status: int, code: str, message: str, errors: Sequence[FieldError] = ()) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if errors:
        body["errors"] = [{"pointer": e.pointer, "message": e.message} for e in errors]
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": body}, status_code=status, headers=headers)


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

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def renew_forever() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await fleet.renew()
                except Exception:  # a bad key file or a busy disk must not stop renewals
                    log.exception("certificate renewal failed")

        task = asyncio.create_task(renew_forever())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

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
    )
    app.include_router(vm_api.router)
    app.include_router(admin_api.router)
    mount_console(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        # On the event loop, not a worker thread: the watcher gauges read loop-owned state.
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(NetpersonaError)
    async def netpersona_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, NetpersonaError)
        errors = exc.errors if isinstance(exc, InvalidDocument) else ()
        return _error(exc.http_status, exc.code, str(exc), errors)

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
