"""``/v1/admin/instances``: register VMs (their addresses identify them), labels, pins,
and what the service would answer each one and why."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from netpersona.errors import FieldError, InvalidDocument, NotFound
from netpersona.model.labels import check_persona_name
from netpersona.policy import PolicyEngine
from netpersona.service.admin.access import Operator, Reader, actor
from netpersona.service.admin.answers import (
    Cursor,
    IfMatch,
    Limit,
    answer,
    change,
    etag,
    read_one,
    read_page,
)
from netpersona.service.context import Ctx
from netpersona.service.schemas import (
    InstanceBody,
    NewInstanceBody,
    PinBody,
    check_instance_id,
    check_labels,
)
from netpersona.service.views import ViewKind
from netpersona.store.base import ApiToken, Instance

__all__ = ["router"]

router = APIRouter()


@router.get("/instances")
async def list_instances(
    ctx: Ctx, _: Reader, limit: Limit = 100, cursor: Cursor = None
) -> JSONResponse:
    return await read_page(ctx, lambda: ctx.store.list_instances(limit, cursor))


@router.post("/instances", status_code=201)
async def create_instance(ctx: Ctx, token: Operator, body: NewInstanceBody) -> JSONResponse:
    check_instance_id(body.id)
    spec = body.instance(body.id)
    made = await change(
        ctx, token, "instance", lambda _: ctx.store.create_instance(spec, actor(token))
    )
    return answer(made.to_json(), etag("r", made.revision), 201)


@router.get("/instances/{instance_id}")
async def get_instance(ctx: Ctx, _: Reader, instance_id: str) -> JSONResponse:
    return await read_one(ctx, lambda: ctx.store.get_instance(instance_id), "r")


@router.put("/instances/{instance_id}")
async def replace_instance(
    ctx: Ctx, token: Operator, instance_id: str, body: InstanceBody, if_match: IfMatch = None
) -> JSONResponse:
    spec = body.instance(instance_id)
    return await _changed(
        ctx,
        token,
        "instance",
        lambda expect: ctx.store.replace_instance(spec, actor(token), expect),
        if_match,
    )


@router.delete("/instances/{instance_id}", status_code=204)
async def delete_instance(
    ctx: Ctx, token: Operator, instance_id: str, if_match: IfMatch = None
) -> Response:
    await change(
        ctx,
        token,
        "instance",
        lambda expect: ctx.store.delete_instance(instance_id, actor(token), expect),
        if_match=if_match,
    )
    return Response(status_code=204)


@router.patch("/instances/{instance_id}/labels")
async def patch_labels(
    ctx: Ctx,
    token: Operator,
    instance_id: str,
    changes: dict[str, str | None],
    if_match: IfMatch = None,
) -> JSONResponse:
    """JSON merge patch of the labels (RFC 7396): a string sets a label, null removes it."""
    errors = check_labels(changes, at="")
    if errors:
        raise InvalidDocument(errors)
    return await _changed(
        ctx,
        token,
        "labels",
        lambda expect: ctx.store.patch_labels(instance_id, changes, actor(token), expect),
        if_match,
    )


@router.put("/instances/{instance_id}/pin")
async def pin_instance(
    ctx: Ctx, token: Operator, instance_id: str, body: PinBody, if_match: IfMatch = None
) -> JSONResponse:
    problem = check_persona_name(body.persona)
    if problem:
        raise InvalidDocument([FieldError("/persona", problem)])
    return await _set_pin(ctx, token, instance_id, body.persona, if_match)


@router.delete("/instances/{instance_id}/pin")
async def unpin_instance(
    ctx: Ctx, token: Operator, instance_id: str, if_match: IfMatch = None
) -> JSONResponse:
    return await _set_pin(ctx, token, instance_id, None, if_match)


async def _set_pin(
    ctx: Ctx, token: ApiToken, instance_id: str, persona: str | None, if_match: str | None
) -> JSONResponse:
    return await _changed(
        ctx,
        token,
        "pin",
        lambda expect: ctx.store.set_pin(instance_id, persona, actor(token), expect),
        if_match,
    )


async def _changed(
    ctx: Ctx,
    token: ApiToken,
    kind: str,
    op: Callable[[int | None], Instance],
    if_match: str | None,
) -> JSONResponse:
    """A change to one instance, answered with the instance as it is now (ETag ``"r<n>"``)."""
    done = await change(ctx, token, kind, op, if_match=if_match)
    return answer(done.to_json(), etag("r", done.revision))


@router.get("/instances/{instance_id}/status")
async def instance_status(ctx: Ctx, _: Reader, instance_id: str) -> JSONResponse:
    return await read_one(ctx, lambda: ctx.store.get_status(instance_id))


@router.get("/instances/{instance_id}/view")
async def instance_view(ctx: Ctx, _: Reader, instance_id: str) -> JSONResponse:
    """What the instance itself would get from the VM-facing API, for debugging."""
    await ctx.fleet.read(lambda: ctx.store.get_instance(instance_id))  # 404 when unknown
    view = await ctx.fleet.settled()
    parts = {
        kind.value: view.view((kind, instance_id))
        for kind in (ViewKind.INSTANCE, ViewKind.PERSONA, ViewKind.PEERS)
    }
    return answer(
        {
            name: None if part is None else {"etag": part.etag, "body": json.loads(part.body)}
            for name, part in parts.items()
        }
    )


@router.get("/instances/{instance_id}/explain")
async def explain_instance(ctx: Ctx, _: Reader, instance_id: str) -> JSONResponse:
    """Why the instance has its persona: the deciding rule, why each earlier rule did not
    match, the overlays applied, and the effective persona served."""
    await ctx.fleet.read(lambda: ctx.store.get_instance(instance_id))  # 404 when unknown

    def explain(engine: PolicyEngine) -> dict[str, Any]:
        if instance_id not in engine.instances:
            raise NotFound(f"instance {instance_id!r} does not exist")
        explanation = engine.explain(instance_id)
        return {**explanation.to_json(), "lines": explanation.lines()}

    return answer(await ctx.fleet.with_engine(explain))
