"""``/v1/admin/context``: the network context (e.g. ``threat_level``) the policy reads."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from netpersona.errors import FieldError, InvalidDocument
from netpersona.model.labels import check_label_key
from netpersona.service.admin.access import Operator, Reader, actor
from netpersona.service.admin.answers import IfMatch, answer, change, etag, read_one
from netpersona.service.context import Ctx
from netpersona.service.schemas import ValueBody
from netpersona.store.base import ContextEntry

__all__ = ["router"]

router = APIRouter()


def _check_context_key(key: str) -> None:
    problem = check_label_key(key)
    if problem:
        raise InvalidDocument([FieldError("/key", problem.replace("label key", "context key"))])


@router.get("/context")
async def list_context(ctx: Ctx, _: Reader) -> JSONResponse:
    entries = await ctx.fleet.read(ctx.store.list_context)
    return answer({"items": [e.to_json() for e in entries], "next_cursor": None})


@router.get("/context/{key}")
async def get_context(ctx: Ctx, _: Reader, key: str) -> JSONResponse:
    return await read_one(ctx, lambda: ctx.store.get_context(key), "r")


@router.put("/context/{key}")
async def set_context(
    ctx: Ctx, token: Operator, key: str, body: ValueBody, if_match: IfMatch = None
) -> JSONResponse:
    _check_context_key(key)

    def set_value(expect: int | None) -> ContextEntry:
        problem = ctx.fleet.stored_policy()[1].context_problem(key, body.value)
        if problem:
            raise InvalidDocument([FieldError("/value", problem)])
        return ctx.store.set_context(key, body.value, actor(token), expect)

    entry = await change(ctx, token, "context", set_value, if_match=if_match, guarded=True)
    return answer(entry.to_json(), etag("r", entry.revision))


@router.delete("/context/{key}", status_code=204)
async def delete_context(ctx: Ctx, token: Operator, key: str, if_match: IfMatch = None) -> Response:
    await change(
        ctx,
        token,
        "context",
        lambda expect: ctx.store.delete_context(key, actor(token), expect),
        if_match=if_match,
    )
    return Response(status_code=204)
