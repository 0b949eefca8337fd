"""``/v1/admin/personas``: versioned persona documents; every change is a new version."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.responses import JSONResponse

from netpersona.errors import Conflict, FieldError, InvalidDocument, NotFound
from netpersona.model import parse_persona
from netpersona.model.labels import check_persona_name
from netpersona.service.admin.access import Operator, Reader, actor
from netpersona.service.admin.answers import (
    Cursor,
    IfMatch,
    Limit,
    NumberCursor,
    answer,
    body_document,
    change,
    etag,
    read_one,
    read_page,
)
from netpersona.service.context import Ctx
from netpersona.service.schemas import RestoreBody
from netpersona.service.strict_json import INT64_MAX, canonical_json
from netpersona.store.base import PersonaVersion

__all__ = ["Version", "router"]

router = APIRouter()

Version = Annotated[int, Path(ge=1, le=INT64_MAX, description="a version number")]


def _check_name(name: str) -> None:
    problem = check_persona_name(name)
    if problem:
        raise InvalidDocument([FieldError("/name", problem)])


@router.get("/personas")
async def list_personas(
    ctx: Ctx, _: Reader, limit: Limit = 100, cursor: Cursor = None
) -> JSONResponse:
    return await read_page(ctx, lambda: ctx.store.list_personas(limit, cursor))


@router.get("/personas/{name}")
async def get_persona(ctx: Ctx, _: Reader, name: str) -> JSONResponse:
    return await read_one(ctx, lambda: ctx.store.get_persona(name), "v")


@router.put(
    "/personas/{name}",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
            "description": "a network_persona document (spec section 1), wrapped or bare",
        }
    },
)
async def put_persona(
    *,
    ctx: Ctx,
    token: Operator,
    name: str,
    request: Request,
    if_match: IfMatch = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Create the persona or add a version; ``If-None-Match: *`` = only create."""
    _check_name(name)
    document = await body_document(request)
    parse_persona(document)  # raises InvalidDocument with pointers into the body
    inner = document.get("network_persona", document)
    at = "/network_persona" if "network_persona" in document else ""
    canonical = canonical_json(inner, at)
    create_only = (if_none_match or "").strip() == "*"

    def put(expect: int | None) -> tuple[bool, PersonaVersion]:
        try:
            ctx.store.get_persona(name)
            existed = True
        except NotFound:
            existed = False
        return existed, ctx.store.put_persona(name, canonical, actor(token), expect, create_only)

    existed, done = await change(ctx, token, "persona", put, if_match=if_match, prefix="v")
    return answer(done.to_json(), etag("v", done.version), 200 if existed else 201)


@router.delete("/personas/{name}", status_code=204)
async def delete_persona(
    ctx: Ctx, token: Operator, name: str, if_match: IfMatch = None
) -> Response:
    def delete(expect: int | None) -> None:
        stored, policy = ctx.fleet.stored_policy()
        if stored is not None and name in policy.personas:
            raise Conflict(
                f"persona {name!r} is handed out by the policy (version {stored.version}); "
                "change the policy first"
            )
        ctx.store.delete_persona(name, actor(token), expect)

    await change(ctx, token, "persona", delete, if_match=if_match, prefix="v", guarded=True)
    return Response(status_code=204)


@router.get("/personas/{name}/versions")
async def persona_history(
    ctx: Ctx, _: Reader, name: str, limit: Limit = 100, cursor: NumberCursor = None
) -> JSONResponse:
    """Every version, newest first."""
    return await read_page(ctx, lambda: ctx.store.persona_history(name, limit, cursor))


@router.get("/personas/{name}/versions/{version}")
async def persona_version(ctx: Ctx, _: Reader, name: str, version: Version) -> JSONResponse:
    return await read_one(ctx, lambda: ctx.store.get_persona(name, version))


@router.post("/personas/{name}/restore")
async def restore_persona(
    ctx: Ctx, token: Operator, name: str, body: RestoreBody, if_match: IfMatch = None
) -> JSONResponse:
    """Make an old version's document current again, as a new version."""
    done = await change(
        ctx,
        token,
        "persona",
        lambda expect: ctx.store.restore_persona(name, body.version, actor(token), expect),
        if_match=if_match,
        prefix="v",
    )
    return answer(done.to_json(), etag("v", done.version))
