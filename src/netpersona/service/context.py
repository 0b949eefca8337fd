"""The objects every request handler needs, kept on the app and handed out by dependency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from netpersona.service.auth import SessionTokens
from netpersona.service.fleet import Fleet
from netpersona.service.metrics import ServiceMetrics
from netpersona.store.base import Store

if TYPE_CHECKING:
    from netpersona.service.replication import ChangeFollower

__all__ = ["Ctx", "ServiceContext", "service"]


@dataclass(slots=True)
class ServiceContext:
    store: Store
    fleet: Fleet
    sessions: SessionTokens
    metrics: ServiceMetrics
    follower: ChangeFollower | None = None  # on a store replicas share (PostgreSQL)


async def service(request: Request) -> ServiceContext:
    # async: FastAPI would run a plain def dependency in a worker thread, on every request.
    ctx = request.app.state.netpersona
    assert isinstance(ctx, ServiceContext)
    return ctx


Ctx = Annotated[ServiceContext, Depends(service)]
