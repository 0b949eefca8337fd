"""The console's read-only pages: sign-in, the fleet, an instance, personas, the audit log.

Server-rendered HTML (Jinja2, autoescaped) that works without JavaScript; the little script in
``static/console.js`` only adds live updates and matrix cell details on top.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from netpersona.errors import Forbidden, InvalidDocument, NotFound
from netpersona.policy import PolicyEngine
from netpersona.policy.whatif import document_changes
from netpersona.service.console.access import SESSION_COOKIE, check_csrf, sessions_of
from netpersona.service.console.common import (
    Ctx,
    Viewer,
    ago,
    render,
    secure,
    templates,
    to_sign_in,
)
from netpersona.service.reachability_api import parse_labels
from netpersona.service.views import FleetView
from netpersona.store.base import Instance, InstanceStatus

__all__ = ["FleetRow", "agent_state", "fleet_rows", "router"]

router = APIRouter(prefix="/ui", include_in_schema=False)
PAGE_SIZE = 200


@router.get("/sign-in")
async def sign_in_form(request: Request) -> Response:
    return secure(templates.TemplateResponse(request, "sign_in.html", {"error": None}))


@router.post("/sign-in")
async def sign_in(request: Request, ctx: Ctx, token: Annotated[str, Form()] = "") -> Response:
    """The token arrives in the form body; only a random session id goes back, in a cookie."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
        # Another site's form would sign this browser in as someone else (login CSRF).
        raise Forbidden("sign-in must come from the console's own page")
    secret = token.strip()
    found = await ctx.fleet.read(lambda: ctx.store.token_for_secret(secret)) if secret else None
    if found is None:
        return secure(
            templates.TemplateResponse(
                request,
                "sign_in.html",
                {"error": "That token is not valid (unknown, revoked, or mistyped)."},
                status_code=401,
            )
        )
    session_id, _ = sessions_of(request).open(secret)
    response = RedirectResponse("/ui/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE, session_id, httponly=True, samesite="strict", path="/", max_age=8 * 3600
    )
    return response


@router.post("/sign-out")
async def sign_out(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    check_csrf(request, csrf)
    sessions_of(request).close(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/ui/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- the fleet --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FleetRow:
    """One line of the fleet page: the instance, what it is served, and what its agent said."""

    instance: Instance
    persona: str | None
    version: int | None
    overlays: tuple[str, ...]
    state: str  # applied, error, drift, removed, no report
    detail: str
    reported: str
    drops: tuple[tuple[str, int], ...]


def agent_state(
    status: InstanceStatus | None, persona: str | None, version: int | None
) -> tuple[str, str]:
    """What the agent's last report says next to what the service serves."""
    if status is None:
        return "no report", "the agent has not reported"
    if status.result == "failed":
        return "error", status.message
    if status.result == "removed":
        return ("removed", "") if persona is None else ("drift", "removed, but a persona is served")
    if (status.persona, status.version) != (persona, version):
        return "drift", f"holds {status.persona} v{status.version}"
    return "applied", status.message


def fleet_rows(
    view: FleetView,
    statuses: dict[str, InstanceStatus],
    ids: list[str],
    now: float,
) -> list[FleetRow]:
    rows = []
    for instance_id in ids:
        instance = view.instances[instance_id]
        held = view.effective.get(instance_id)
        persona, version = (held.name, held.version) if held else (None, None)
        status = statuses.get(instance_id)
        state, detail = agent_state(status, persona, version)
        rows.append(
            FleetRow(
                instance,
                persona,
                version,
                held.overlays if held else (),
                state,
                detail,
                ago(status.reported_at if status else None, now),
                tuple((k, v) for k, v in (status.drops if status else ()) if v),
            )
        )
    return rows


def _matching(view: FleetView, labels: tuple[tuple[str, str], ...], persona: str) -> list[str]:
    ids = []
    for instance_id, instance in view.instances.items():
        if labels and not all(pair in instance.labels for pair in labels):
            continue
        if persona:
            held = view.effective.get(instance_id)
            if (held.name if held else "-") != persona:
                continue
        ids.append(instance_id)
    return sorted(ids)


def _statuses(ctx: Ctx, ids: list[str]) -> dict[str, InstanceStatus]:
    found = {}
    for instance_id in ids:
        with contextlib.suppress(NotFound):
            found[instance_id] = ctx.store.get_status(instance_id)
    return found


@router.get("/")
async def fleet(
    request: Request,
    ctx: Ctx,
    viewer: Viewer,
    label: Annotated[str, Query()] = "",
    persona: Annotated[str, Query()] = "",
    page: Annotated[int, Query(ge=1)] = 1,
) -> Response:
    if viewer is None:
        return to_sign_in()
    view = await ctx.fleet.settled()
    error = None
    try:
        labels = parse_labels([p for p in label.split(",") if p.strip()], "/label")
    except InvalidDocument as exc:
        error, labels = str(exc), ()
    ids = _matching(view, labels, persona)
    shown = ids[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    statuses = await ctx.fleet.read(lambda: _statuses(ctx, shown))
    held = Counter(v.name for v in view.effective.values())
    return render(
        request,
        ctx,
        viewer,
        "fleet.html",
        rows=fleet_rows(view, statuses, shown, time.time()),
        total=len(view.instances),
        matching=len(ids),
        first=(page - 1) * PAGE_SIZE + 1 if shown else 0,
        last=(page - 1) * PAGE_SIZE + len(shown),
        page=page,
        more=page * PAGE_SIZE < len(ids),
        personas=sorted(held.items()),
        unassigned=len(view.instances) - sum(held.values()),
        label=label,
        persona=persona,
        error=error,
    )


# -- one instance -----------------------------------------------------------------------


@router.get("/instances/{instance_id}")
async def instance_page(request: Request, ctx: Ctx, viewer: Viewer, instance_id: str) -> Response:
    if viewer is None:
        return to_sign_in()
    view = await ctx.fleet.settled()
    instance = view.instances.get(instance_id)
    if instance is None:
        return render(request, ctx, viewer, "missing.html", 404, what=f"instance {instance_id}")

    def explain(engine: PolicyEngine) -> list[str]:
        if instance_id not in engine.instances:
            return ["(the policy engine has not seen this instance yet)"]
        return engine.explain(instance_id).lines()

    lines = await ctx.fleet.with_engine(explain)
    statuses = await ctx.fleet.read(lambda: _statuses(ctx, [instance_id]))
    history = await ctx.fleet.read(
        lambda: ctx.store.list_audit(50, None, f"instance/{instance_id}").items
    )
    held = view.effective.get(instance_id)
    row = fleet_rows(view, statuses, [instance_id], time.time())[0]
    return render(
        request,
        ctx,
        viewer,
        "instance.html",
        instance=instance,
        row=row,
        document=json.dumps(dict(held.document), indent=2, sort_keys=True) if held else None,
        explain=lines,
        peers=view.peers(instance_id),
        history=[_audit_row(e.to_json()) for e in history],
        others=sorted(i for i in view.instances if i != instance_id)[:500],
        services=sorted({str(e.text) for e in held.persona.allowed_protocols} | {"icmp"})
        if held is not None and held.persona is not None
        else ["icmp"],
        report=statuses.get(instance_id),
    )


# -- personas ---------------------------------------------------------------------------


@router.get("/personas")
async def personas_page(request: Request, ctx: Ctx, viewer: Viewer) -> Response:
    if viewer is None:
        return to_sign_in()
    items = await ctx.fleet.read(lambda: ctx.store.list_personas(1000).items)
    held = Counter(v.name for v in (await ctx.fleet.settled()).effective.values())
    return render(request, ctx, viewer, "personas.html", personas=items, held=held)


@router.get("/personas/{name}")
async def persona_page(
    request: Request,
    ctx: Ctx,
    viewer: Viewer,
    name: str,
    a: Annotated[int | None, Query(ge=1)] = None,
    b: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    if viewer is None:
        return to_sign_in()
    try:
        versions = await ctx.fleet.read(lambda: ctx.store.persona_history(name, 1000).items)
    except NotFound:
        versions = ()
    if not versions:
        return render(request, ctx, viewer, "missing.html", 404, what=f"persona {name}")
    by_version = {v.version: v for v in versions}
    newest = versions[0].version
    right = b if b in by_version else newest
    left = a if a in by_version else max((v for v in by_version if v < right), default=right)
    old, new = by_version[left].body, by_version[right].body
    diff = list(
        difflib.unified_diff(
            json.dumps(old, indent=2, sort_keys=True).splitlines(),
            json.dumps(new, indent=2, sort_keys=True).splitlines(),
            f"v{left}",
            f"v{right}",
            lineterm="",
        )
    )
    return render(
        request,
        ctx,
        viewer,
        "persona.html",
        name=name,
        versions=versions,
        left=left,
        right=right,
        changes=document_changes(old, new),
        diff=diff,
        document=json.dumps(new, indent=2, sort_keys=True),
    )


# -- the audit log ----------------------------------------------------------------------


def _audit_row(entry: dict[str, Any]) -> dict[str, Any]:
    before, after = entry["before"], entry["after"]
    if before is None or after is None:
        change = "created" if before is None else "deleted"
    else:
        skip = {"revision", "updated_at", "created_at", "version", "created_by", "restored_from"}
        change = "; ".join(
            f"{k}: {json.dumps(before.get(k))} -> {json.dumps(after.get(k))}"
            for k in sorted(set(before) | set(after))
            if k not in skip and before.get(k) != after.get(k)
        )
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry["at"]))
    return {**entry, "change": change or "-", "when": when}


@router.get("/audit")
async def audit_page(
    request: Request,
    ctx: Ctx,
    viewer: Viewer,
    cursor: Annotated[str | None, Query()] = None,
    target: Annotated[str, Query()] = "",
) -> Response:
    if viewer is None:
        return to_sign_in()
    page = await ctx.fleet.read(lambda: ctx.store.list_audit(100, cursor, target or None))
    return render(
        request,
        ctx,
        viewer,
        "audit.html",
        entries=[_audit_row(e.to_json()) for e in page.items],
        next_cursor=page.next_cursor,
        target=target,
    )
