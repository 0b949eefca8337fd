"""``/v1/admin/policy``: the persona policy, checked in full (with its tests) before it is
stored, and the what-if (``diff``) that asks the policy engine and commits nothing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from netpersona.errors import FieldError, InvalidDocument
from netpersona.model.labels import check_label_key
from netpersona.model.parse import escape_pointer
from netpersona.policy import (
    Change,
    PolicyChanged,
    PolicyEngine,
    parse_policy,
)
from netpersona.service.admin.access import Operator, Reader, actor
from netpersona.service.admin.answers import (
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
from netpersona.service.admin.personas import Version
from netpersona.service.assignment import check_policy, split_policy_document
from netpersona.service.context import Ctx
from netpersona.service.reachability_api import diff_answer, proposed_changes
from netpersona.service.schemas import DiffBody, check_labels
from netpersona.service.strict_json import canonical_json
from netpersona.store.base import PolicyVersion

__all__ = ["router"]

router = APIRouter()

_POLICY_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
        "description": (
            "the policy document ({persona_policy: ...}, see docs/policy.md), optionally with "
            "a top-level `tests` key holding a policy tests document"
        ),
    }
}


@router.get("/policy")
async def get_policy(ctx: Ctx, _: Reader) -> JSONResponse:
    return await read_one(ctx, ctx.store.get_policy, "p")


@router.put("/policy", openapi_extra=_POLICY_BODY)
async def put_policy(
    *, ctx: Ctx, token: Operator, request: Request, if_match: IfMatch = None
) -> JSONResponse:
    """Store the policy as a new version, after checking it (and its tests) in full."""
    document = await body_document(request)
    if not isinstance(document, dict):
        raise InvalidDocument([FieldError("", "expected a mapping (a policy document)")])
    canonical = canonical_json(document)

    def put(expect: int | None) -> tuple[bool, PolicyVersion]:
        before, _ = ctx.fleet.stored_policy()
        check_policy(document, ctx.store.fleet())
        return before is not None, ctx.store.put_policy(canonical, actor(token), expect)

    existed, done = await change(
        ctx, token, "policy", put, if_match=if_match, prefix="p", guarded=True
    )
    return answer(done.to_json(), etag("p", done.version), 200 if existed else 201)


@router.delete("/policy", status_code=204)
async def delete_policy(ctx: Ctx, token: Operator, if_match: IfMatch = None) -> Response:
    """No policy: pinned instances keep their pin, the others get no persona."""
    await change(
        ctx,
        token,
        "policy",
        lambda expect: ctx.store.delete_policy(actor(token), expect),
        if_match=if_match,
        prefix="p",
        guarded=True,
    )
    return Response(status_code=204)


@router.get("/policy/versions")
async def policy_history(
    ctx: Ctx, _: Reader, limit: Limit = 100, cursor: NumberCursor = None
) -> JSONResponse:
    """Every version of the policy, newest first."""
    return await read_page(ctx, lambda: ctx.store.policy_history(limit, cursor))


@router.get("/policy/versions/{version}")
async def policy_version(ctx: Ctx, _: Reader, version: Version) -> JSONResponse:
    return await read_one(ctx, lambda: ctx.store.get_policy(version))


def _check_diff(body: DiffBody) -> None:
    errors = [
        e
        for instance_id, patch in body.labels.items()
        for e in check_labels(patch, at=f"/labels/{escape_pointer(instance_id)}")
    ]
    for key in body.context:
        problem = check_label_key(key)
        if problem:
            errors.append(FieldError(f"/context/{escape_pointer(key)}", problem))
    if errors:
        raise InvalidDocument(errors)


def _proposed_changes(engine: PolicyEngine, body: DiffBody) -> list[Change]:
    changes: list[Change] = []
    policy = engine.policy
    if body.policy is not None:
        try:
            policy = parse_policy(
                split_policy_document(body.policy)[0], personas=set(engine.personas)
            )
        except InvalidDocument as exc:
            raise InvalidDocument(
                [FieldError("/policy" + e.pointer, e.message) for e in exc.errors]
            ) from None
        changes.append(PolicyChanged(policy))
    return changes + proposed_changes(engine, body.context, body.labels, policy=policy)


@router.post("/policy/diff")
async def policy_diff(ctx: Ctx, _: Reader, body: DiffBody) -> JSONResponse:
    """What-if: every instance whose decision a proposed policy, context values and label
    changes would change, and how. Nothing is committed."""
    _check_diff(body)

    def propose(engine: PolicyEngine) -> dict[str, Any]:
        return diff_answer(engine, _proposed_changes(engine, body), body.personas)

    return answer(await ctx.fleet.with_engine(propose))
