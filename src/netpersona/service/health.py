"""Health for load balancers and systemd: ``GET /healthz`` (the process answers) and
``GET /readyz`` (it can serve: the database answers, its schema is this netpersona's, a
replica follows the others' writes, and it is not stopping). Neither needs a token, and
neither says more than a reason.

Stopping (SIGTERM) starts with :func:`begin_shutdown`: every held long-poll answers at once
with its current view, later ones do not wait, and ``/readyz`` answers 503, so a load balancer
takes this replica out and agents move to the next one (docs/deployment.md).
"""

from __future__ import annotations

import asyncio

import anyio.to_thread
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse

from netpersona.errors import StoreError
from netpersona.service.context import Ctx, ServiceContext

__all__ = ["READY_TIMEOUT", "begin_shutdown", "readiness", "router"]

router = APIRouter(tags=["health"])

READY_TIMEOUT = 5.0  # seconds the database has to answer a readiness check


async def readiness(ctx: ServiceContext) -> str | None:
    """Why this process should not be sent requests now; None: it is ready."""
    if ctx.fleet.notifier.draining:
        return "the service is stopping"
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            found, known = await anyio.to_thread.run_sync(ctx.store.schema_versions)
    except TimeoutError:
        return f"the database did not answer within {READY_TIMEOUT:g} s"
    except StoreError as exc:
        return str(exc)
    if found != known:
        return (
            f"the database's schema is version {found}, this netpersona's is {known}: "
            "run `netpersona db migrate` (or this replica's newer netpersona)"
        )
    follower = ctx.follower
    if follower is not None and (follower.connected is None or follower.last_seen is None):
        return "not yet listening for the writes of other replicas (reconnecting)"
    return None


@router.get("/healthz")
async def healthz() -> JSONResponse:
    """200 while the process answers requests (no database round trip)."""
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


@router.get("/readyz", responses={503: {"description": "not ready, with the reason"}})
async def readyz(ctx: Ctx) -> JSONResponse:
    """200 when this process can serve; 503 with ``reason`` otherwise."""
    reason = await readiness(ctx)
    headers = {"Cache-Control": "no-store"}
    if reason is not None:
        return JSONResponse({"status": "unready", "reason": reason}, 503, headers=headers)
    return JSONResponse({"status": "ready"}, headers=headers)


def begin_shutdown(app: FastAPI) -> None:
    """Answer every held long-poll now and stop holding new ones (on the event loop)."""
    ctx = app.state.netpersona
    assert isinstance(ctx, ServiceContext)
    ctx.fleet.notifier.drain()
