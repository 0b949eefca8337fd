"""What every admin route shares: paging and If-Match parameters, writes, and answers.

``If-Match`` takes the ETag a read returned (``"r<revision>"`` for instances and context keys,
``"v<version>"`` for personas, ``"p<version>"`` for the policy); a stale one gets 412, one that
is not an ETag of this kind of record gets 400.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import structlog
from fastapi import Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator

from netpersona.errors import UsageError
from netpersona.service.admin.access import actor
from netpersona.service.context import ServiceContext
from netpersona.service.guard import SCOPE_BODY
from netpersona.service.strict_json import INT64_MAX, ascii_int, parse_json, shown
from netpersona.store.base import ApiToken, Page

__all__ = [
    "Cursor",
    "IfMatch",
    "Limit",
    "NumberCursor",
    "answer",
    "body_document",
    "change",
    "etag",
    "page",
    "read_one",
    "read_page",
]

T = TypeVar("T")

log = structlog.get_logger("netpersona.service")

MAX_CURSOR = 128


def _cursor(value: str | None) -> str | None:
    if value is not None and not (
        0 < len(value) <= MAX_CURSOR
        and value.isascii()
        and value.replace("-", "").replace("_", "").isalnum()
    ):
        raise ValueError(f"{shown(value)} is not a cursor (use next_cursor from the last page)")
    return value


def _number_cursor(value: str | None) -> str | None:
    # History and audit pages continue before a version or sequence number (1..2^63-1).
    if _cursor(value) is None:
        return None
    assert value is not None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raw = ""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19 and 1 <= int(raw) <= INT64_MAX):
        raise ValueError(f"{shown(value)} is not a cursor (use next_cursor from the last page)")
    return value


Limit = Annotated[int, Query(ge=1, le=1000, description="items per page")]
Cursor = Annotated[
    str | None,
    Query(max_length=MAX_CURSOR, description="next_cursor from the previous page"),
    AfterValidator(_cursor),
]
NumberCursor = Annotated[
    str | None,
    Query(max_length=MAX_CURSOR, description="next_cursor from the previous page"),
    AfterValidator(_number_cursor),
]
IfMatch = Annotated[str | None, Header()]


def etag(prefix: str, number: int) -> str:
    return f'"{prefix}{number}"'


def expected(if_match: str | None, prefix: str) -> int | None:
    """The revision an ``If-Match`` header names; None for no header or ``*``."""
    if if_match is None or if_match.strip() == "*":
        return None
    tag = if_match.strip().removeprefix("W/").strip('"')
    if not tag.startswith(prefix):
        raise UsageError(
            f"If-Match: {shown(if_match)} is not an ETag of this record (expected "
            f'"{prefix}<n>" as returned by a read)'
        )
    return ascii_int(tag.removeprefix(prefix), "If-Match", 0, INT64_MAX, UsageError, "a revision")


def page(found: Page[Any]) -> dict[str, Any]:
    return {"items": [item.to_json() for item in found.items], "next_cursor": found.next_cursor}


# Which number each kind of ETag carries (see the module docstring).
_TAGGED = {"r": "revision", "v": "version", "p": "version"}


async def read_page(ctx: ServiceContext, fetch: Callable[[], Page[Any]]) -> JSONResponse:
    """One page of stored records, answered as ``{items, next_cursor}``."""
    return answer(page(await ctx.fleet.read(fetch)))


async def read_one(
    ctx: ServiceContext, fetch: Callable[[], Any], prefix: str | None = None
) -> JSONResponse:
    """One stored record; with ``prefix``, its ETag (``"r<revision>"``, ``"v<version>"``...)."""
    found = await ctx.fleet.read(fetch)
    tag = None if prefix is None else etag(prefix, getattr(found, _TAGGED[prefix]))
    return answer(found.to_json(), tag)


def answer(data: Any, tag: str | None = None, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers={"ETag": tag} if tag else None)


async def change(
    ctx: ServiceContext,
    token: ApiToken,
    kind: str,
    op: Callable[[int | None], T],
    *,
    if_match: str | None = None,
    prefix: str = "r",
    guarded: bool = False,
) -> T:
    """Commit ``op(expected revision)``, counted and logged as a change of ``kind``.

    ``guarded``: the change's checks read the stored policy, so it runs under the policy lock.
    """
    expect = expected(if_match, prefix)
    write = ctx.fleet.guarded_write if guarded else ctx.fleet.write
    result = await write(lambda: op(expect))
    ctx.metrics.changes.labels(kind).inc()
    log.info("change", kind=kind, actor=actor(token), revision=ctx.fleet.view.revision)
    return result


async def body_document(request: Request) -> Any:
    """The request's JSON body, parsed (strictly) by the request guard."""
    state = request.scope.get("state", {})
    if SCOPE_BODY in state:
        return state[SCOPE_BODY]
    return parse_json(await request.body())
