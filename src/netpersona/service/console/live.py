"""Live updates: server-sent events whenever the service publishes a new fleet view.

Every committed write publishes a new :class:`~netpersona.service.views.FleetView` with a
higher revision (the same publication that wakes the VMs' long-polls). The stream looks at the
published view's revision a few times a second, on the event loop and without touching the
store, and sends ``event: change`` with the new revision; the page then fetches itself again
and swaps its main content. A comment every 15 s keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from netpersona.service.console.common import Ctx, Viewer

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)
CHECK_SECONDS = 0.2
KEEPALIVE_SECONDS = 15.0


@router.get("/events")
async def events(request: Request, ctx: Ctx, viewer: Viewer) -> Response:
    if viewer is None:
        return Response(status_code=401)

    async def stream() -> AsyncIterator[str]:
        seen = ctx.fleet.view.revision
        yield f"retry: 2000\nevent: hello\ndata: {seen}\n\n"
        idle = 0.0
        while not await request.is_disconnected():
            await asyncio.sleep(CHECK_SECONDS)
            revision = ctx.fleet.view.revision
            if revision != seen:
                seen, idle = revision, 0.0
                yield f"event: change\ndata: {revision}\n\n"
            else:
                idle += CHECK_SECONDS
                if idle >= KEEPALIVE_SECONDS:
                    idle = 0.0
                    yield ": keepalive\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
