"""``/v1/admin/audit``: every change, newest first: who, when, what, before and after."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from netpersona.service.admin.access import Reader
from netpersona.service.admin.answers import Limit, NumberCursor, read_page
from netpersona.service.context import Ctx

__all__ = ["router"]

router = APIRouter()


@router.get("/audit")
async def list_audit(
    ctx: Ctx,
    _: Reader,
    limit: Limit = 100,
    cursor: NumberCursor = None,
    target: Annotated[
        str | None, Query(max_length=300, description="e.g. persona/db or instance/vm1")
    ] = None,
) -> JSONResponse:
    """Every change, newest first: who, when, what, and the record before and after."""
    return await read_page(ctx, lambda: ctx.store.list_audit(limit, cursor, target))
