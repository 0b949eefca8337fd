"""Reachability in the admin API: can A reach B, the fleet's matrix, and the diff's blast radius.

``GET /v1/admin/reachability?from=A&to=B&proto=tcp&port=5432`` answers with the engine's
verdict (:mod:`netpersona.reachability`) over the service's own fleet: the instances and the
effective personas the policy engine decides, peers resolved as the peer views resolve them.
``GET /v1/admin/reachability/matrix`` answers every ordered pair of a selection for every
service. Both need the reader role and commit nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from netpersona.errors import FieldError, InvalidDocument, NotFound
from netpersona.model.labels import check_label_key, check_label_value
from netpersona.model.parse import escape_pointer
from netpersona.policy import Change, ContextChanged, LabelsChanged, Policy, PolicyEngine
from netpersona.reachability import (
    Endpoint,
    Service,
    Via,
    blast_radius,
    can_reach,
    endpoints_of,
    matrix,
    persona_edits,
    service_named,
    services_of,
)
from netpersona.service.console.access import role
from netpersona.service.context import ServiceContext, service
from netpersona.store.base import ApiToken, Role

__all__ = [
    "MAX_SELECTION",
    "Selection",
    "diff_answer",
    "proposed_changes",
    "router",
    "select",
    "verdict_answer",
]

router = APIRouter(prefix="/v1/admin", tags=["reachability"])
Ctx = Annotated[ServiceContext, Depends(service)]
Reader = Annotated[ApiToken, Depends(role(Role.READER))]
MAX_SELECTION = 100  # instances in one matrix: 9900 pairs times the services


@dataclass(frozen=True, slots=True)
class Selection:
    """Which instances a matrix covers: named ones, or those matching labels and a persona."""

    instances: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    persona: str | None = None
    services: tuple[str, ...] = ()


def parse_labels(pairs: Sequence[str], pointer: str = "/label") -> tuple[tuple[str, str], ...]:
    found = []
    for text in pairs:
        key, sep, value = text.partition("=")
        problem = (
            "expected KEY=VALUE" if not sep else check_label_key(key) or check_label_value(value)
        )
        if problem:
            raise InvalidDocument([FieldError(pointer, f"{text!r}: {problem}")])
        found.append((key, value))
    return tuple(found)


def select(endpoints: Mapping[str, Endpoint], selection: Selection) -> list[Endpoint]:
    if selection.instances:
        unknown = [i for i in selection.instances if i not in endpoints]
        if unknown:
            raise NotFound(f"no instance {', '.join(map(repr, unknown))}")
        chosen = [endpoints[i] for i in dict.fromkeys(selection.instances)]
    else:
        chosen = [
            e
            for _, e in sorted(endpoints.items())
            if all(e.labels.get(k) == v for k, v in selection.labels)
            and (selection.persona is None or e.persona_name == selection.persona)
        ]
    if len(chosen) > MAX_SELECTION:
        raise InvalidDocument(
            [
                FieldError(
                    "/instance",
                    f"{len(chosen)} instances selected; a matrix takes at most {MAX_SELECTION} "
                    "(name instances, or narrow by label or persona)",
                )
            ]
        )
    return chosen


def matrix_answer(endpoints: Mapping[str, Endpoint], selection: Selection) -> dict[str, Any]:
    chosen = select(endpoints, selection)
    services = (
        [service_named(s, "/service") for s in selection.services]
        if selection.services
        else services_of(endpoints.values())
    )
    cells = matrix(chosen, services)
    return {
        "instances": [
            {"id": e.name, "persona": e.persona_name, "labels": dict(e.labels)} for e in chosen
        ],
        "services": [s.name for s in services],
        "cells": [
            {
                "from": src,
                "to": dst,
                "service": name,
                "reachable": verdict.reachable,
                "summary": verdict.summary(),
                "decided_by": verdict.decisive.to_json() if verdict.decisive else None,
            }
            for (src, dst, name), verdict in cells.items()
        ],
    }


def verdict_answer(
    endpoints: Mapping[str, Endpoint],
    src: str,
    dst: str,
    service: Service,
    via: Via = Via.UNICAST,
    group: str | None = None,
) -> dict[str, Any]:
    for name, pointer in ((src, "/from"), (dst, "/to")):
        if name not in endpoints:
            raise NotFound(f"{pointer[1:]}: no instance {name!r}")
    target = None
    if via is Via.MULTICAST:
        try:
            target = ip_address(group or "")
        except ValueError:
            raise InvalidDocument(
                [FieldError("/group", f"{group!r} is not a multicast group address")]
            ) from None
        if not target.is_multicast:
            raise InvalidDocument([FieldError("/group", f"{group} is not a multicast address")])
    # A service named with its own way ("udp/6000 broadcast") keeps it unless one is asked.
    ways = service.traffic() if via is Via.UNICAST else service.traffic(via, target)
    verdicts = [can_reach(endpoints[src], endpoints[dst], t) for t in ways]
    best = next((v for v in verdicts if v.reachable), verdicts[0])
    return {
        "from": src,
        "to": dst,
        "service": service.name,
        "via": verdicts[0].traffic.via.value,
        "reachable": best.reachable,
        "summary": best.summary(),
        "verdict": best.to_json(),
        "verdicts": [v.to_json() for v in verdicts],
    }


def _service(proto: str, port: int | None) -> Service:
    if port is not None:
        if "/" in proto:
            raise InvalidDocument([FieldError("/port", "give the port in proto or port, not both")])
        return service_named(f"{proto}/{port}", "/port")
    return service_named(proto)


@router.get("/reachability")
async def reachability(
    ctx: Ctx,
    _: Reader,
    src: Annotated[str, Query(alias="from", description="instance id of the sender")],
    dst: Annotated[str, Query(alias="to", description="instance id of the receiver")],
    proto: Annotated[str, Query(description="tcp, udp/53, icmp, postgres, ...")],
    port: Annotated[int | None, Query(ge=1, le=65535)] = None,
    via: Annotated[Via, Query(description="unicast, broadcast or multicast")] = Via.UNICAST,
    group: Annotated[str | None, Query(description="the multicast group (via=multicast)")] = None,
) -> JSONResponse:
    """Can ``from`` reach ``to`` with this traffic, and the persona, field, rule and drop
    counter that decide it."""
    service_ = _service(proto, port)
    endpoints = await ctx.fleet.with_engine(endpoints_of)
    return JSONResponse(verdict_answer(endpoints, src, dst, service_, via, group))


@router.get("/reachability/matrix")
async def reachability_matrix(
    ctx: Ctx,
    _: Reader,
    instance: Annotated[list[str] | None, Query(description="instance ids (repeatable)")] = None,
    label: Annotated[list[str] | None, Query(description="KEY=VALUE (repeatable)")] = None,
    persona: Annotated[str | None, Query(description="only instances holding it")] = None,
    service_name: Annotated[
        list[str] | None, Query(alias="service", description="services (default: every one)")
    ] = None,
) -> JSONResponse:
    """Every ordered pair of the selected instances (at most 100) for every service."""
    selection = Selection(
        tuple(instance or ()), parse_labels(label or ()), persona, tuple(service_name or ())
    )
    endpoints = await ctx.fleet.with_engine(endpoints_of)
    return JSONResponse(matrix_answer(endpoints, selection))


def proposed_changes(
    engine: PolicyEngine,
    context: Mapping[str, str | None],
    labels: Mapping[str, Mapping[str, str | None]],
    *,
    policy: Policy | None = None,
    pointer: Callable[[str], str] = escape_pointer,
) -> list[Change]:
    """Context values and label patches (None unsets) as changes to the engine's fleet.

    Values ``policy`` (default: the engine's) does not allow and unknown instances are all
    named in one InvalidDocument; ``pointer`` writes a key into the error's JSON pointer.
    """
    policy = engine.policy if policy is None else policy
    problems: list[FieldError] = []
    changes: list[Change] = []
    for key, value in context.items():
        problem = None if value is None else policy.context_problem(key, value)
        if problem:
            problems.append(FieldError(f"/context/{pointer(key)}", problem))
        changes.append(ContextChanged(key, value))
    for instance_id, patch in labels.items():
        facts = engine.instances.get(instance_id)
        if facts is None:
            problems.append(
                FieldError(f"/labels/{pointer(instance_id)}", f"no instance {instance_id!r}")
            )
            continue
        patched = dict(facts.labels)
        for name, new in patch.items():
            if new is None:
                patched.pop(name, None)
            else:
                patched[name] = new
        changes.append(LabelsChanged(instance_id, patched))
    if problems:
        raise InvalidDocument(problems)
    return changes


def diff_answer(
    engine: PolicyEngine, changes: list[Change], personas: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The what-if answer of ``POST /v1/admin/policy/diff``: decision changes and the
    connectivity they move (proposed persona documents included)."""
    proposed = [*changes, *persona_edits(engine, personas or {})]
    return blast_radius(engine, proposed).to_json()
