"""``/v1/admin/tokens``: API tokens (admin role only); a secret is shown once, at creation."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from netpersona.service.admin.access import Admin, actor
from netpersona.service.admin.answers import answer, change
from netpersona.service.context import Ctx
from netpersona.service.schemas import TokenBody

__all__ = ["router"]

router = APIRouter()


@router.get("/tokens")
async def list_tokens(ctx: Ctx, _: Admin) -> JSONResponse:
    tokens = await ctx.fleet.read(ctx.store.list_tokens)
    return answer({"items": [t.to_json() for t in tokens], "next_cursor": None})


@router.post("/tokens", status_code=201)
async def create_token(ctx: Ctx, token: Admin, body: TokenBody) -> JSONResponse:
    """A new token; its secret is in this response and nowhere else, ever."""
    made, secret = await change(
        ctx, token, "token", lambda _: ctx.store.create_token(body.name, body.role, actor(token))
    )
    return answer({**made.to_json(), "token": secret}, status=201)


@router.delete("/tokens/{token_id}", status_code=204)
async def revoke_token(ctx: Ctx, token: Admin, token_id: str) -> Response:
    await change(ctx, token, "token", lambda _: ctx.store.revoke_token(token_id, actor(token)))
    return Response(status_code=204)
