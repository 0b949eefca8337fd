"""What every console page shares: templates, the signed-in caller, and rendering."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from netpersona.service.console.access import SESSION_COOKIE, session_of, sessions_of
from netpersona.service.context import ServiceContext, service
from netpersona.store.base import ApiToken, Role

__all__ = ["STATIC", "Ctx", "Viewer", "ago", "render", "secure", "signed_in", "to_sign_in"]

HERE = Path(__file__).resolve().parent
STATIC = str(HERE / "static")
templates = Jinja2Templates(directory=str(HERE / "templates"))
Ctx = Annotated[ServiceContext, Depends(service)]


async def signed_in(request: Request, ctx: Ctx) -> ApiToken | None:
    """The console session's token (revoked tokens end their sessions), None if signed out."""
    session = session_of(request)
    if session is None:
        return None
    token = await ctx.fleet.read(lambda: ctx.store.token_for_secret(session.secret))
    if token is None:
        sessions_of(request).close(request.cookies.get(SESSION_COOKIE))
    return token


Viewer = Annotated[ApiToken | None, Depends(signed_in)]


def to_sign_in() -> Response:
    return RedirectResponse("/ui/sign-in", status_code=303)


def ago(at: float | None, now: float | None = None) -> str:
    if at is None:
        return "-"
    seconds = max(0, int((now or time.time()) - at))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def render(
    request: Request,
    ctx: ServiceContext,
    token: ApiToken,
    template: str,
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    session = session_of(request)
    response = templates.TemplateResponse(
        request,
        template,
        {
            "viewer": token,
            "can_write": token.role.allows(Role.OPERATOR),
            "csrf": session.csrf if session else "",
            "revision": ctx.fleet.view.revision,
            **values,
        },
        status_code=status,
    )
    secure(response)
    return response


def secure(response: Response) -> Response:
    """No caching of pages that show the fleet; no framing (the Apply button must not be
    clickjacked); scripts, styles and images only from the service itself."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = "default-src 'self'; frame-ancestors 'none'"
    response.headers["Referrer-Policy"] = "same-origin"
    return response
