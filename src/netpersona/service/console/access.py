"""Who is calling the console and the reachability API: a bearer token, or a console session.

Signing in to the console posts an admin API token in a form body (never a query string, so no
URL, history entry or access log line holds it). The service keeps the token in memory under a
random session id and hands the browser only that id, in an ``HttpOnly``, ``SameSite=Strict``
cookie scoped to ``/``. Every request looks the token up again in the store, so revoking it
ends its sessions at once. Sessions live in memory: a restart of the service signs everyone out.

Forms that change anything carry a per-session CSRF token; SameSite=Strict already keeps other
sites' forms from sending the cookie, the token also stops a same-site page that is not the
console.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from netpersona.errors import Forbidden, Unauthorized
from netpersona.service.context import ServiceContext, service
from netpersona.store.base import ApiToken, Role

__all__ = [
    "SESSION_COOKIE",
    "ConsoleSessions",
    "Session",
    "caller",
    "optional_caller",
    "require",
    "role",
    "sessions_of",
]

SESSION_COOKIE = "np_console"
SESSION_SECONDS = 8 * 3600
MAX_SESSIONS = 10_000


@dataclass(slots=True)
class Session:
    secret: str  # the API token itself, kept server-side only
    csrf: str
    expires: float


class ConsoleSessions:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._by_id: dict[str, Session] = {}
        self._clock = clock

    def open(self, secret: str) -> tuple[str, Session]:
        now = self._clock()
        if len(self._by_id) >= MAX_SESSIONS:
            self._by_id = {k: s for k, s in self._by_id.items() if s.expires > now}
            if len(self._by_id) >= MAX_SESSIONS:  # still full: the oldest go first
                for key in sorted(self._by_id, key=lambda k: self._by_id[k].expires)[:100]:
                    del self._by_id[key]
        session_id = secrets.token_urlsafe(32)
        session = Session(secret, secrets.token_urlsafe(24), now + SESSION_SECONDS)
        self._by_id[session_id] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._by_id.get(session_id)
        if session is None or session.expires <= self._clock():
            self._by_id.pop(session_id, None)
            return None
        return session

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._by_id.pop(session_id, None)


def sessions_of(request: Request) -> ConsoleSessions:
    found = request.app.state.console_sessions
    assert isinstance(found, ConsoleSessions)
    return found


def session_of(request: Request) -> Session | None:
    return sessions_of(request).get(request.cookies.get(SESSION_COOKIE))


def check_csrf(request: Request, sent: str) -> None:
    session = session_of(request)
    if session is None or not hmac.compare_digest(session.csrf.encode(), sent.encode()):
        raise Forbidden("the form is stale or did not come from the console (CSRF token)")


Ctx = Annotated[ServiceContext, Depends(service)]


async def optional_caller(
    request: Request, ctx: Ctx, authorization: Annotated[str | None, Header()] = None
) -> ApiToken | None:
    """The token of the caller: the bearer token, else the console session's; None if none."""
    scheme, _, secret = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        key = secret.strip()
    else:
        session = session_of(request)
        if session is None:
            return None
        key = session.secret
    return await ctx.fleet.read(lambda: ctx.store.token_for_secret(key))


async def caller(
    request: Request, token: Annotated[ApiToken | None, Depends(optional_caller)]
) -> ApiToken:
    if token is None:
        raise Unauthorized("Authorization: a bearer token or a console session is required")
    return token


def require(token: ApiToken, needed: Role) -> ApiToken:
    """The token, if its role allows what ``needed`` allows; Forbidden otherwise."""
    if not token.role.allows(needed):
        raise Forbidden(
            f"token {token.name!r} has role {token.role.value}; this needs {needed.value}"
        )
    return token


def role(needed: Role, token_of: Callable[..., Any] = caller) -> Callable[..., Any]:
    """A dependency: the token ``token_of`` finds, which must have the ``needed`` role."""

    # A default, not Annotated: annotations are strings here, resolved in the module's globals.
    async def check(token: ApiToken = Depends(token_of)) -> ApiToken:  # noqa: B008
        return require(token, needed)

    return check
