"""The API a VM (its agent) calls: its own metadata, persona and peer view, and its status.

No route takes an instance id: the caller is whoever owns the source address, so there is
nothing to change in a URL to reach another VM's data. See docs/metadata-api.md.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import PlainTextResponse

from netpersona.errors import FieldError, InvalidDocument, NotFound
from netpersona.service.auth import TOKEN_HEADER, TOKEN_TTL_HEADER
from netpersona.service.callers import identify, source_address
from netpersona.service.context import Ctx, ServiceContext, service
from netpersona.service.schemas import StatusBody
from netpersona.service.strict_json import shown
from netpersona.service.views import View, ViewKind, normalize_etag
from netpersona.store.base import Instance, InstanceStatus

__all__ = ["REVISION_HEADER", "router"]

router = APIRouter(prefix="/v1", tags=["instance"])
log = structlog.get_logger("netpersona.service")

DEFAULT_WAIT = 300
MAX_WAIT = 3600
# The fleet revision of the view an answer comes from; ``min_revision`` asks for at least it.
REVISION_HEADER = "X-Netpersona-Revision"
MAX_REVISION_DIGITS = 18


def _source(request: Request) -> str:
    return source_address(request.scope, request.headers)


async def caller(
    request: Request,
    ctx: Annotated[ServiceContext, Depends(service)],
    token: Annotated[str | None, Header(alias=TOKEN_HEADER)] = None,
) -> Instance:
    """The instance making the request, after its session token is checked."""
    address = _source(request)
    instance = await identify(ctx, address)
    ctx.sessions.check(token, address, instance.id)
    return instance


Caller = Annotated[Instance, Depends(caller)]


@router.put("/token", response_class=PlainTextResponse)
async def put_token(
    request: Request,
    ctx: Ctx,
    ttl: Annotated[str | None, Header(alias=TOKEN_TTL_HEADER)] = None,
) -> PlainTextResponse:
    """A session token for the calling instance, valid from its address for ``ttl`` seconds."""
    address = _source(request)
    seconds = ctx.sessions.parse_ttl(ttl)
    instance = await identify(ctx, address)
    return PlainTextResponse(
        ctx.sessions.issue(address, instance.id, seconds),
        headers={TOKEN_TTL_HEADER: str(seconds), "Cache-Control": "no-store"},
    )


def _respond(view: View | None, revision: int) -> Response:
    if view is None:
        raise NotFound("this instance was deleted")
    return Response(
        view.body,
        media_type="application/json",
        headers={"ETag": view.etag, "Cache-Control": "no-store", REVISION_HEADER: str(revision)},
    )


async def reach(ctx: ServiceContext, watch: Watch) -> None:
    """When the caller saw a newer revision than this replica's view (it asked another
    replica), catch up with the store first; one read at most, and the view is then what it
    is. On a store no other process writes (SQLite) there is nothing to catch up with."""
    if watch.min_revision is not None and ctx.follower is not None:
        await ctx.follower.catch_up_to(watch.min_revision)


@dataclass(frozen=True, slots=True)
class Watch:
    """The GCE long-poll parameters, and a plain conditional GET's If-None-Match."""

    wait_for_change: bool
    last_etag: str | None
    timeout_sec: int
    if_none_match: str | None
    min_revision: int | None = None

    @classmethod
    def of(cls, request: Request) -> Watch:
        # Read by hand rather than by FastAPI's parameter injection: these three GETs are the
        # hot path (every agent, every poll), and injection was most of their cost. The same
        # parameters are declared for OpenAPI in WATCH_PARAMETERS.
        return cls.parse(request.query_params, request.headers.get("if-none-match"))

    @classmethod
    def parse(cls, query: Mapping[str, str], if_none_match: str | None) -> Watch:
        """From the query parameters (the last of a repeated name counts) and the
        If-None-Match header."""
        errors = []
        wait = query.get("wait_for_change", "false").lower()
        if wait not in _BOOLEANS:
            errors.append(FieldError("/wait_for_change", f"{shown(wait)} is not true or false"))
        timeout_text = query.get("timeout_sec", str(DEFAULT_WAIT))
        ok = timeout_text.isascii() and timeout_text.isdigit() and len(timeout_text) <= 4
        timeout = int(timeout_text) if ok else 0
        if not 1 <= timeout <= MAX_WAIT:
            errors.append(
                FieldError(
                    "/timeout_sec",
                    f"{shown(timeout_text)} is not a number of seconds 1..{MAX_WAIT}",
                )
            )
        revision_text = query.get("min_revision")
        revision = None
        if revision_text is not None:
            if (
                revision_text.isascii()
                and revision_text.isdigit()
                and len(revision_text) <= MAX_REVISION_DIGITS
            ):
                revision = int(revision_text)
            else:
                errors.append(
                    FieldError(
                        "/min_revision",
                        f"{shown(revision_text)} is not a revision (a whole number of at most "
                        f"{MAX_REVISION_DIGITS} digits)",
                    )
                )
        if errors:
            raise InvalidDocument(errors)
        return cls(
            wait_for_change=_BOOLEANS.get(wait, False),
            last_etag=query.get("last_etag") or None,
            timeout_sec=timeout,
            if_none_match=if_none_match,
            min_revision=revision,
        )


_BOOLEANS = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}

WATCH_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "wait_for_change",
        "in": "query",
        "schema": {"type": "boolean", "default": False},
        "description": "hold the request until the value differs from last_etag (GCE semantics)",
    },
    {
        "name": "last_etag",
        "in": "query",
        "schema": {"type": "string"},
        "description": "the ETag the caller already has; without it, wait for the next change",
    },
    {
        "name": "timeout_sec",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_WAIT, "default": DEFAULT_WAIT},
        "description": "longest wait, in seconds; then the current value is returned",
    },
    {
        "name": "min_revision",
        "in": "query",
        "schema": {"type": "integer", "minimum": 0},
        "description": "the highest X-Netpersona-Revision the caller has seen: a replica whose "
        "view is older first catches up with the store",
    },
    {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}},
    {
        "name": TOKEN_HEADER,
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": "the session token from PUT /v1/token",
    },
]


async def _serve_view(request: Request, kind: ViewKind) -> Response:
    ctx = request.app.state.netpersona
    assert isinstance(ctx, ServiceContext)
    instance = await caller(request, ctx, request.headers.get(TOKEN_HEADER))
    watch = Watch.of(request)
    key = (kind, instance.id)
    await reach(ctx, watch)
    if kind is ViewKind.CERTIFICATE:
        await ctx.fleet.fresh_certificate(instance.id)
    fleet_view = ctx.fleet.view
    current = fleet_view.view(key)
    if not watch.wait_for_change:
        if (
            current is not None
            and watch.if_none_match
            and normalize_etag(watch.if_none_match) == current.etag
        ):
            return Response(
                status_code=304,
                headers={"ETag": current.etag, REVISION_HEADER: str(fleet_view.revision)},
            )
        return _respond(current, fleet_view.revision)
    # GCE semantics: without last_etag, wait for the next change from now.
    if watch.last_etag:
        etag = normalize_etag(watch.last_etag)
    else:
        etag = current.etag if current is not None else ""
    view = await ctx.fleet.notifier.wait(key, etag, float(watch.timeout_sec))
    # The view the answer came from, or a newer one (never an older: publish keeps the order).
    return _respond(view, ctx.fleet.view.revision)


_VIEW_ROUTE: dict[str, Any] = {
    "response_class": Response,
    "openapi_extra": {"parameters": WATCH_PARAMETERS},
}


@router.get("/instance", **_VIEW_ROUTE)
async def get_instance(request: Request) -> Response:
    """The caller's own metadata: id, name, addresses, interfaces (with tier), labels."""
    return await _serve_view(request, ViewKind.INSTANCE)


@router.get("/instance/network_persona", **_VIEW_ROUTE)
async def get_network_persona(request: Request) -> Response:
    """The caller's effective persona (name, version, document); all null when it has none."""
    return await _serve_view(request, ViewKind.PERSONA)


@router.get("/instance/peers", **_VIEW_ROUTE)
async def get_peers(request: Request) -> Response:
    """Every instance the caller's ``peers`` selectors match: addresses, persona, priority,
    labels, and nothing else."""
    return await _serve_view(request, ViewKind.PEERS)


@router.get("/instance/certificate", **_VIEW_ROUTE)
async def get_certificate(request: Request) -> Response:
    """The caller's persona certificate (spec section 8): ``certificate`` (a compact JWS),
    ``expires_at`` and ``seq``; all null when it has no effective persona. Re-issued on every
    change of what it binds and before expiry, which wakes a watch."""
    return await _serve_view(request, ViewKind.CERTIFICATE)


@router.get("/keys", **_VIEW_ROUTE)
async def get_keys(request: Request) -> Response:
    """The public keys certificates are verified with (a JWKS); during a key rotation both
    the old and the new key."""
    return await _serve_view(request, ViewKind.KEYS)


@router.post("/instance/status", status_code=204)
async def post_status(ctx: Ctx, instance: Caller, body: StatusBody) -> Response:
    """The agent's report: which persona version it applied, the result, drop counters."""
    status = InstanceStatus(
        instance_id=instance.id,
        persona=body.persona,
        version=body.version,
        result=body.result,
        message=body.message,
        drops=tuple(sorted(body.drops.items())),
        reported_at=time.time(),
    )
    await ctx.fleet.read(lambda: ctx.store.record_status(status))
    log.info(
        "status reported",
        vm=instance.id,
        persona=body.persona,
        version=body.version,
        result=body.result,
    )
    return Response(status_code=204)
