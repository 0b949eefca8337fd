"""Who may call the admin API: bearer tokens with roles (reader < operator < admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from netpersona.service.callers import SCOPE_TOKEN, admin_token
from netpersona.service.console.access import role
from netpersona.service.context import Ctx
from netpersona.store.base import ApiToken, Role

__all__ = ["Admin", "Operator", "Reader", "actor"]


async def _token(
    request: Request, ctx: Ctx, authorization: Annotated[str | None, Header()] = None
) -> ApiToken:
    checked = request.scope.get("state", {}).get(SCOPE_TOKEN)
    if isinstance(checked, ApiToken):  # the request guard looked it up before the body
        return checked
    return await admin_token(ctx, authorization)


Reader = Annotated[ApiToken, Depends(role(Role.READER, _token))]
Operator = Annotated[ApiToken, Depends(role(Role.OPERATOR, _token))]
Admin = Annotated[ApiToken, Depends(role(Role.ADMIN, _token))]


def actor(token: ApiToken) -> str:
    """How a token is named in the audit log."""
    return f"{token.name} ({token.id})"
