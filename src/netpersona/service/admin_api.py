"""The operators' API under ``/v1/admin``: bearer tokens with roles, CRUD, If-Match, paging.

Roles: ``reader`` may read everything but tokens; ``operator`` may also change instances,
labels, personas, pins and context; ``admin`` may also manage tokens. Every write names the
token in the audit log. ``If-Match`` takes the ETag a read returned (``"r<revision>"`` for
instances and context keys, ``"v<version>"`` for personas, ``"p<version>"`` for the policy); a
stale one gets 412.

The persona policy (``/v1/admin/policy``) is checked in full before it is stored (catalog
references, shadowed rules, CEL, and the tests it carries); context values the policy does not
allow and deleting a persona the policy hands out are refused. Explain and what-if (``diff``)
ask the service's policy engine and commit nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import structlog
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from netpersona.errors import (
    Conflict,
    FieldError,
    Forbidden,
    InvalidDocument,
    NotFound,
    PreconditionFailed,
)
from netpersona.errors import Unauthorized as UnauthorizedError
from netpersona.model import parse_persona
from netpersona.model.labels import check_label_key, check_persona_name
from netpersona.model.parse import escape_pointer
from netpersona.policy import (
    Change,
    ContextChanged,
    LabelsChanged,
    PolicyChanged,
    PolicyEngine,
    parse_policy,
)
from netpersona.service.assignment import check_policy, split_policy_document
from netpersona.service.context import ServiceContext, service
from netpersona.service.reachability_api import diff_answer
from netpersona.service.schemas import (
    DiffBody,
    InstanceBody,
    NewInstanceBody,
    PinBody,
    RestoreBody,
    TokenBody,
    ValueBody,
    check_instance_id,
    check_labels,
)
from netpersona.service.views import ViewKind
from netpersona.store.base import (
    ApiToken,
    ContextEntry,
    Page,
    PersonaVersion,
    PolicyVersion,
    Role,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["admin"])
log = structlog.get_logger("netpersona.service")

T = TypeVar("T")
Ctx = Annotated[ServiceContext, Depends(service)]


async def _token(ctx: Ctx, authorization: Annotated[str | None, Header()] = None) -> ApiToken:
    scheme, _, secret = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise UnauthorizedError("Authorization: a bearer token is required (Bearer np_...)")
    token = await ctx.fleet.read(lambda: ctx.store.token_for_secret(secret.strip()))
    if token is None:
        raise UnauthorizedError("Authorization: the bearer token is not valid (unknown or revoked)")
    return token


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
Limit = Annotated[int, Query(ge=1, le=1000, description="items per page")]
Cursor = Annotated[str | None, Query(description="next_cursor from the previous page")]
IfMatch = Annotated[str | None, Header()]


def _actor(token: ApiToken) -> str:
    return f"{token.name} ({token.id})"


def _expect(if_match: str | None, prefix: str) -> int | None:
    """The revision an ``If-Match`` header names; None for no header or ``*``."""
    if if_match is None or if_match.strip() == "*":
        return None
    tag = if_match.strip().removeprefix("W/").strip('"')
    number = tag.removeprefix(prefix)
    if not tag.startswith(prefix) or not number.isdigit():
        raise PreconditionFailed(
            f"If-Match: {if_match!r} is not an ETag this resource had (expected "
            f'"{prefix}<n>" as returned by a read)'
        )
    return int(number)


def _page(page: Page[Any]) -> dict[str, Any]:
    return {"items": [item.to_json() for item in page.items], "next_cursor": page.next_cursor}


def _json(data: Any, etag: str | None = None, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers={"ETag": etag} if etag else None)


async def _write(ctx: ServiceContext, token: ApiToken, kind: str, op: Callable[[], T]) -> T:
    result = await ctx.fleet.write(op)
    ctx.metrics.changes.labels(kind).inc()
    log.info("change", kind=kind, actor=_actor(token), revision=ctx.fleet.view.revision)
    return result


async def _guarded_write(ctx: ServiceContext, token: ApiToken, kind: str, op: Callable[[], T]) -> T:
    """:func:`_write` for a change whose checks read the stored policy."""
    result = await ctx.fleet.guarded_write(op)
    ctx.metrics.changes.labels(kind).inc()
    log.info("change", kind=kind, actor=_actor(token), revision=ctx.fleet.view.revision)
    return result


async def _body_json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError as exc:
        raise InvalidDocument([FieldError("", f"the body is not JSON: {exc}")]) from None


def _check_name(name: str) -> None:
    problem = check_persona_name(name)
    if problem:
        raise InvalidDocument([FieldError("/name", problem)])


# -- instances --------------------------------------------------------------------------


@router.get("/instances")
async def list_instances(
    ctx: Ctx, _: Reader, limit: Limit = 100, cursor: Cursor = None
) -> JSONResponse:
    return _json(_page(await ctx.fleet.read(lambda: ctx.store.list_instances(limit, cursor))))


@router.post("/instances", status_code=201)
async def create_instance(ctx: Ctx, token: Operator, body: NewInstanceBody) -> JSONResponse:
    check_instance_id(body.id)
    spec = body.instance(body.id)
    made = await _write(
        ctx, token, "instance", lambda: ctx.store.create_instance(spec, _actor(token))
    )
    return _json(made.to_json(), f'"r{made.revision}"', 201)


@router.get("/instances/{instance_id}")
async def get_instance(ctx: Ctx, _: Reader, instance_id: str) -> JSONResponse:
    found = await ctx.fleet.read(lambda: ctx.store.get_instance(instance_id))
    return _json(found.to_json(), f'"r{found.revision}"')


@router.put("/instances/{instance_id}")
async def replace_instance(
    ctx: Ctx, token: Operator, instance_id: str, body: InstanceBody, if_match: IfMatch = None
) -> JSONResponse:
    spec = body.instance(instance_id)
    expect = _expect(if_match, "r")
    done = await _write(
        ctx,
        token,
        "instance",
        lambda: ctx.store.replace_instance(spec, _actor(token), expect),
    )
    return _json(done.to_json(), f'"r{done.revision}"')


@router.delete("/instances/{instance_id}", status_code=204)
async def delete_instance(
    ctx: Ctx, token: Operator, instance_id: str, if_match: IfMatch = None
) -> Response:
    expect = _expect(if_match, "r")
    await _write(
        ctx,
        token,
        "instance",
        lambda: ctx.store.delete_instance(instance_id, _actor(token), expect),
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
    expect = _expect(if_match, "r")
    done = await _write(
        ctx,
        token,
        "labels",
        lambda: ctx.store.patch_labels(instance_id, changes, _actor(token), expect),
    )
    return _json(done.to_json(), f'"r{done.revision}"')


@router.put("/instances/{instance_id}/pin")
async def pin_instance(
    ctx: Ctx, token: Operator, instance_id: str, body: PinBody, if_match: IfMatch = None
) -> JSONResponse:
    problem = check_persona_name(body.persona)
    if problem:
        raise InvalidDocument([FieldError("/persona", problem)])
    expect = _expect(if_match, "r")
    done = await _write(
        ctx,
        token,
        "pin",
        lambda: ctx.store.set_pin(instance_id, body.persona, _actor(token), expect),
    )
    return _json(done.to_json(), f'"r{done.revision}"')


@router.delete("/instances/{instance_id}/pin")
async def unpin_instance(
    ctx: Ctx, token: Operator, instance_id: str, if_match: IfMatch = None
) -> JSONResponse:
    expect = _expect(if_match, "r")
    done = await _write(
        ctx, token, "pin", lambda: ctx.store.set_pin(instance_id, None, _actor(token), expect)
    )
    return _json(done.to_json(), f'"r{done.revision}"')


@router.get("/instances/{instance_id}/status")
async def instance_status(ctx: Ctx, _: Reader, instance_id: str) -> JSONResponse:
    found = await ctx.fleet.read(lambda: ctx.store.get_status(instance_id))
    return _json(found.to_json())


@router.get("/instances/{instance_id}/view")
async def instance_view(ctx: Ctx, _: Reader, instance_id: str) -> JSONResponse:
    """What the instance itself would get from the VM-facing API, for debugging."""
    await ctx.fleet.read(lambda: ctx.store.get_instance(instance_id))  # 404 when unknown
    view = ctx.fleet.view
    parts = {
        kind.value: view.view((kind, instance_id))
        for kind in (ViewKind.INSTANCE, ViewKind.PERSONA, ViewKind.PEERS)
    }
    return _json(
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

    return _json(await ctx.fleet.with_engine(explain))


# -- personas ---------------------------------------------------------------------------


@router.get("/personas")
async def list_personas(
    ctx: Ctx, _: Reader, limit: Limit = 100, cursor: Cursor = None
) -> JSONResponse:
    return _json(_page(await ctx.fleet.read(lambda: ctx.store.list_personas(limit, cursor))))


@router.get("/personas/{name}")
async def get_persona(ctx: Ctx, _: Reader, name: str) -> JSONResponse:
    found = await ctx.fleet.read(lambda: ctx.store.get_persona(name))
    return _json(found.to_json(), f'"v{found.version}"')


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
    try:
        document = json.loads(await request.body())
    except ValueError as exc:
        raise InvalidDocument([FieldError("", f"the body is not JSON: {exc}")]) from None
    parse_persona(document)  # raises InvalidDocument with pointers into the body
    inner = document.get("network_persona", document)
    canonical = json.dumps(inner, sort_keys=True, separators=(",", ":"))
    expect = _expect(if_match, "v")
    create_only = (if_none_match or "").strip() == "*"

    def put() -> tuple[bool, PersonaVersion]:
        try:
            ctx.store.get_persona(name)
            existed = True
        except NotFound:
            existed = False
        return existed, ctx.store.put_persona(name, canonical, _actor(token), expect, create_only)

    existed, done = await _write(ctx, token, "persona", put)
    return _json(done.to_json(), f'"v{done.version}"', 200 if existed else 201)


@router.delete("/personas/{name}", status_code=204)
async def delete_persona(
    ctx: Ctx, token: Operator, name: str, if_match: IfMatch = None
) -> Response:
    expect = _expect(if_match, "v")

    def delete() -> None:
        stored, policy = ctx.fleet.stored_policy()
        if stored is not None and name in policy.personas:
            raise Conflict(
                f"persona {name!r} is handed out by the policy (version {stored.version}); "
                "change the policy first"
            )
        ctx.store.delete_persona(name, _actor(token), expect)

    await _guarded_write(ctx, token, "persona", delete)
    return Response(status_code=204)


@router.get("/personas/{name}/versions")
async def persona_history(
    ctx: Ctx, _: Reader, name: str, limit: Limit = 100, cursor: Cursor = None
) -> JSONResponse:
    """Every version, newest first."""
    return _json(
        _page(await ctx.fleet.read(lambda: ctx.store.persona_history(name, limit, cursor)))
    )


@router.get("/personas/{name}/versions/{version}")
async def persona_version(ctx: Ctx, _: Reader, name: str, version: int) -> JSONResponse:
    found = await ctx.fleet.read(lambda: ctx.store.get_persona(name, version))
    return _json(found.to_json())


@router.post("/personas/{name}/restore")
async def restore_persona(
    ctx: Ctx, token: Operator, name: str, body: RestoreBody, if_match: IfMatch = None
) -> JSONResponse:
    """Make an old version's document current again, as a new version."""
    expect = _expect(if_match, "v")
    done = await _write(
        ctx,
        token,
        "persona",
        lambda: ctx.store.restore_persona(name, body.version, _actor(token), expect),
    )
    return _json(done.to_json(), f'"v{done.version}"')


# -- the persona policy -----------------------------------------------------------------

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
    found = await ctx.fleet.read(ctx.store.get_policy)
    return _json(found.to_json(), f'"p{found.version}"')


@router.put("/policy", openapi_extra=_POLICY_BODY)
async def put_policy(
    *, ctx: Ctx, token: Operator, request: Request, if_match: IfMatch = None
) -> JSONResponse:
    """Store the policy as a new version, after checking it (and its tests) in full."""
    document = await _body_json(request)
    if not isinstance(document, dict):
        raise InvalidDocument([FieldError("", "expected a mapping (a policy document)")])
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    expect = _expect(if_match, "p")

    def put() -> tuple[bool, PolicyVersion]:
        before, _ = ctx.fleet.stored_policy()
        check_policy(document, ctx.store.fleet())
        return before is not None, ctx.store.put_policy(canonical, _actor(token), expect)

    existed, done = await _guarded_write(ctx, token, "policy", put)
    return _json(done.to_json(), f'"p{done.version}"', 200 if existed else 201)


@router.delete("/policy", status_code=204)
async def delete_policy(ctx: Ctx, token: Operator, if_match: IfMatch = None) -> Response:
    """No policy: pinned instances keep their pin, the others get no persona."""
    expect = _expect(if_match, "p")
    await _guarded_write(
        ctx, token, "policy", lambda: ctx.store.delete_policy(_actor(token), expect)
    )
    return Response(status_code=204)


@router.get("/policy/versions")
async def policy_history(
    ctx: Ctx, _: Reader, limit: Limit = 100, cursor: Cursor = None
) -> JSONResponse:
    """Every version of the policy, newest first."""
    return _json(_page(await ctx.fleet.read(lambda: ctx.store.policy_history(limit, cursor))))


@router.get("/policy/versions/{version}")
async def policy_version(ctx: Ctx, _: Reader, version: int) -> JSONResponse:
    found = await ctx.fleet.read(lambda: ctx.store.get_policy(version))
    return _json(found.to_json())


@router.post("/policy/diff")
async def policy_diff(ctx: Ctx, _: Reader, body: DiffBody) -> JSONResponse:
    """What-if: every instance whose decision a proposed policy, context values and label
    changes would change, and how. Nothing is committed."""
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

    def propose(engine: PolicyEngine) -> dict[str, Any]:
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
        problems = []
        for key, value in body.context.items():
            problem = None if value is None else policy.context_problem(key, value)
            if problem:
                problems.append(FieldError(f"/context/{escape_pointer(key)}", problem))
            changes.append(ContextChanged(key, value))
        for instance_id, patch in body.labels.items():
            facts = engine.instances.get(instance_id)
            if facts is None:
                problems.append(
                    FieldError(
                        f"/labels/{escape_pointer(instance_id)}", f"no instance {instance_id!r}"
                    )
                )
                continue
            labels = dict(facts.labels)
            for key, value in patch.items():
                if value is None:
                    labels.pop(key, None)
                else:
                    labels[key] = value
            changes.append(LabelsChanged(instance_id, labels))
        if problems:
            raise InvalidDocument(problems)
        return diff_answer(engine, changes, body.personas)

    return _json(await ctx.fleet.with_engine(propose))


# -- network context --------------------------------------------------------------------


def _check_context_key(key: str) -> None:
    problem = check_label_key(key)
    if problem:
        raise InvalidDocument([FieldError("/key", problem.replace("label key", "context key"))])


@router.get("/context")
async def list_context(ctx: Ctx, _: Reader) -> JSONResponse:
    entries = await ctx.fleet.read(ctx.store.list_context)
    return _json({"items": [e.to_json() for e in entries], "next_cursor": None})


@router.get("/context/{key}")
async def get_context(ctx: Ctx, _: Reader, key: str) -> JSONResponse:
    entry = await ctx.fleet.read(lambda: ctx.store.get_context(key))
    return _json(entry.to_json(), f'"r{entry.revision}"')


@router.put("/context/{key}")
async def set_context(
    ctx: Ctx, token: Operator, key: str, body: ValueBody, if_match: IfMatch = None
) -> JSONResponse:
    _check_context_key(key)
    expect = _expect(if_match, "r")

    def set_value() -> ContextEntry:
        problem = ctx.fleet.stored_policy()[1].context_problem(key, body.value)
        if problem:
            raise InvalidDocument([FieldError("/value", problem)])
        return ctx.store.set_context(key, body.value, _actor(token), expect)

    entry = await _guarded_write(ctx, token, "context", set_value)
    return _json(entry.to_json(), f'"r{entry.revision}"')


@router.delete("/context/{key}", status_code=204)
async def delete_context(ctx: Ctx, token: Operator, key: str, if_match: IfMatch = None) -> Response:
    expect = _expect(if_match, "r")
    await _write(
        ctx, token, "context", lambda: ctx.store.delete_context(key, _actor(token), expect)
    )
    return Response(status_code=204)


# -- audit and tokens -------------------------------------------------------------------


@router.get("/audit")
async def list_audit(
    ctx: Ctx,
    _: Reader,
    limit: Limit = 100,
    cursor: Cursor = None,
    target: Annotated[str | None, Query(description="e.g. persona/db or instance/vm1")] = None,
) -> JSONResponse:
    """Every change, newest first: who, when, what, and the record before and after."""
    return _json(_page(await ctx.fleet.read(lambda: ctx.store.list_audit(limit, cursor, target))))


@router.get("/tokens")
async def list_tokens(ctx: Ctx, _: Admin) -> JSONResponse:
    tokens = await ctx.fleet.read(ctx.store.list_tokens)
    return _json({"items": [t.to_json() for t in tokens], "next_cursor": None})


@router.post("/tokens", status_code=201)
async def create_token(ctx: Ctx, token: Admin, body: TokenBody) -> JSONResponse:
    """A new token; its secret is in this response and nowhere else, ever."""
    made, secret = await _write(
        ctx, token, "token", lambda: ctx.store.create_token(body.name, body.role, _actor(token))
    )
    return _json({**made.to_json(), "token": secret}, status=201)


@router.delete("/tokens/{token_id}", status_code=204)
async def revoke_token(ctx: Ctx, token: Admin, token_id: str) -> Response:
    await _write(ctx, token, "token", lambda: ctx.store.revoke_token(token_id, _actor(token)))
    return Response(status_code=204)
