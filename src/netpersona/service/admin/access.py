"""Who may call the admin API: bearer tokens with roles (reader < operator < admin)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from netpersona.errors import Forbidden
from netpersona.service.callers import SCOPE_TOKEN, admin_token
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


def _role(needed: Role) -> Callable[..., Any]:
    async def check(token: Annotated[ApiToken, Depends(_token)]) -> ApiToken:
        if not token.role.allows(needed):
            raise Forbidden(
                f"token {token.name!r} has role {token.role.value}; this needs {needed.value}"
            )
        return token

    return check


Reader = Annotated[ApiToken, Depends(_role(Role.READER))]
Operator = Annotated[ApiToken, Depends(_role(Role.OPERATOR))]
Admin = Annotated[ApiToken, Depends(_role(Role.ADMIN))]


def actor(token: ApiToken) -> str:
    """How a token is named in the audit log."""
    return f"{token.name} ({token.id})"
