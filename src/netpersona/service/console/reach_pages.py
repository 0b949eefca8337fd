"""The console's reachability pages: the matrix, one verdict, and the what-if's blast radius.

The what-if computes on a trial copy of the policy engine (nothing is stored) and is open to
readers; applying it is a write: operator role, CSRF token, and the same checks as the admin
API (context values the policy allows, labels that validate), recorded in the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from netpersona.errors import FieldError, InvalidDocument, NetpersonaError
from netpersona.model.labels import check_label_key, check_label_value
from netpersona.policy import Change, PolicyEngine
from netpersona.reachability import Via, blast_radius, endpoints_of, service_named, services_of
from netpersona.service.console.access import check_csrf, require
from netpersona.service.console.common import Ctx, Viewer, render, to_sign_in
from netpersona.service.reachability_api import (
    MAX_SELECTION,
    Selection,
    matrix_answer,
    parse_labels,
    proposed_changes,
    verdict_answer,
)
from netpersona.store.base import Role

__all__ = ["Proposal", "router"]

router = APIRouter(prefix="/ui", include_in_schema=False)
DEFAULT_SELECTION = 30  # the matrix shows the whole fleet up to this many instances


@router.get("/reachability")
async def matrix_page(
    request: Request,
    ctx: Ctx,
    viewer: Viewer,
    instances: Annotated[str, Query()] = "",
    label: Annotated[str, Query()] = "",
    persona: Annotated[str, Query()] = "",
    service: Annotated[str, Query()] = "",
) -> Response:
    if viewer is None:
        return to_sign_in()
    endpoints = await ctx.fleet.with_engine(endpoints_of)
    names = tuple(i.strip() for i in instances.replace(",", " ").split() if i.strip())
    selection = Selection(
        names,
        parse_labels([p for p in label.split(",") if p.strip()]),
        persona or None,
        (service,) if service else (),
    )
    error, answer = None, None
    if not names and not label and not persona and len(endpoints) > DEFAULT_SELECTION:
        error = (
            f"The fleet has {len(endpoints)} instances: choose up to {MAX_SELECTION} by name, "
            "label or persona."
        )
    else:
        try:
            answer = matrix_answer(endpoints, selection)
        except NetpersonaError as exc:
            error = str(exc)
    grid: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for cell in answer["cells"] if answer else ():
        grid.setdefault((cell["from"], cell["to"]), []).append(cell)
    return render(
        request,
        ctx,
        viewer,
        "matrix.html",
        answer=answer,
        grid=grid,
        error=error,
        instances=instances,
        label=label,
        persona=persona,
        service=service,
        all_services=[s.name for s in services_of(endpoints.values())],
    )


@router.get("/can")
async def verdict_page(
    request: Request,
    ctx: Ctx,
    viewer: Viewer,
    src: Annotated[str, Query(alias="from")],
    dst: Annotated[str, Query(alias="to")],
    proto: Annotated[str, Query()] = "icmp",
    via: Annotated[Via, Query()] = Via.UNICAST,
    group: Annotated[str, Query()] = "",
) -> Response:
    if viewer is None:
        return to_sign_in()
    endpoints = await ctx.fleet.with_engine(endpoints_of)
    try:
        answer = verdict_answer(endpoints, src, dst, service_named(proto), via, group or None)
    except NetpersonaError as exc:
        return render(request, ctx, viewer, "verdict.html", 400, answer=None, error=str(exc))
    return render(request, ctx, viewer, "verdict.html", answer=answer, error=None)


# -- what-if ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Proposal:
    """Context values and label patches as the what-if form gives them."""

    context: dict[str, str]
    labels: dict[str, dict[str, str | None]]

    @classmethod
    def parse(cls, context: str, labels: str) -> Proposal:
        errors: list[FieldError] = []
        values: dict[str, str] = {}
        for line in context.splitlines():
            if line.strip():
                key, sep, value = line.strip().partition("=")
                if not sep or check_label_key(key.strip()):
                    errors.append(FieldError("/context", f"{line.strip()!r}: expected KEY=VALUE"))
                else:
                    values[key.strip()] = value.strip()
        patches: dict[str, dict[str, str | None]] = {}
        for line in labels.splitlines():
            text = line.strip()
            if not text:
                continue
            instance, sep, change = text.partition(":")
            key, eq, value = change.partition("=")
            if change.endswith("-") and not eq:
                patches.setdefault(instance, {})[change[:-1]] = None
                continue
            problem: str | None = (
                None if sep and eq else "expected INSTANCE:KEY=VALUE or INSTANCE:KEY-"
            )
            problem = problem or check_label_key(key) or check_label_value(value)
            if problem:
                errors.append(FieldError("/labels", f"{text!r}: {problem}"))
            else:
                patches.setdefault(instance, {})[key] = value
        if errors:
            raise InvalidDocument(errors)
        return cls(values, patches)

    def changes(self, engine: PolicyEngine) -> list[Change]:
        return proposed_changes(engine, self.context, self.labels, pointer=str)


@dataclass(frozen=True, slots=True)
class WhatIfForm:
    """The what-if form as posted, to see the blast radius or to apply it."""

    csrf: str
    context: str
    labels: str

    def proposal(self) -> Proposal:
        return Proposal.parse(self.context, self.labels)


def _what_if_form(
    csrf: Annotated[str, Form()] = "",
    context: Annotated[str, Form()] = "",
    labels: Annotated[str, Form()] = "",
) -> WhatIfForm:
    return WhatIfForm(csrf, context, labels)


Posted = Annotated[WhatIfForm, Depends(_what_if_form)]


def _context_keys(engine: PolicyEngine) -> list[dict[str, Any]]:
    return [
        {
            "key": key,
            "values": sorted(declared.values or ()),
            "current": engine.context.get(key, declared.default or ""),
        }
        for key, declared in sorted(engine.policy.context.items())
    ]


@router.get("/what-if")
async def what_if_form(request: Request, ctx: Ctx, viewer: Viewer) -> Response:
    if viewer is None:
        return to_sign_in()
    keys = await ctx.fleet.with_engine(_context_keys)
    return render(request, ctx, viewer, "what_if.html", keys=keys, result=None, error=None, form={})


@router.post("/what-if")
async def what_if_page(request: Request, ctx: Ctx, viewer: Viewer, posted: Posted) -> Response:
    if viewer is None:
        return to_sign_in()
    check_csrf(request, posted.csrf)
    form = {"context": posted.context, "labels": posted.labels}

    def run(engine: PolicyEngine) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        proposal = posted.proposal()
        return _context_keys(engine), blast_radius(engine, proposal.changes(engine)).to_json()

    try:
        keys, result = await ctx.fleet.with_engine(run)
    except NetpersonaError as exc:
        keys = await ctx.fleet.with_engine(_context_keys)
        return render(
            request, ctx, viewer, "what_if.html", 422, keys=keys, result=None,
            error=str(exc), form=form,
        )  # fmt: skip
    return render(
        request, ctx, viewer, "what_if.html", keys=keys, result=result, error=None, form=form
    )


@router.post("/what-if/apply")
async def apply_what_if(request: Request, ctx: Ctx, viewer: Viewer, posted: Posted) -> Response:
    """Make the proposal real: operator role and a CSRF token, checked as the admin API does."""
    if viewer is None:
        return to_sign_in()
    check_csrf(request, posted.csrf)
    require(viewer, Role.OPERATOR)
    proposal = posted.proposal()
    actor = f"{viewer.name} ({viewer.id}) via the console"

    def write() -> None:
        _, policy = ctx.fleet.stored_policy()
        for key, value in proposal.context.items():
            if problem := policy.context_problem(key, value):
                raise InvalidDocument([FieldError(f"/context/{key}", problem)])
        for instance_id in proposal.labels:
            ctx.store.get_instance(instance_id)  # NotFound before anything is written
        for key, value in proposal.context.items():
            ctx.store.set_context(key, value, actor)
        for instance_id, patch in proposal.labels.items():
            ctx.store.patch_labels(instance_id, patch, actor)

    await ctx.fleet.guarded_write(write)
    return RedirectResponse("/ui/audit", status_code=303)
