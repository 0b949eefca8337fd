"""Port changes as in-place set updates.

The compiler puts the destination ports a persona allows into named interval sets
(:data:`~netpersona.compiler.plan.PORT_SETS`) that the rules name. Two plans whose table
objects differ only in those sets' elements are applied by deleting and adding the elements
that differ, in one nftables transaction, instead of replacing the table: the kernel commits
the batch whole or not at all, chains and rules are not reloaded, and conntrack entries and
established flows are untouched. The undo is the inverse batch; the readback after it is the
applier's usual one, the whole table against the plan.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from netpersona.compiler.plan import PORT_SETS, TABLE_FAMILY, TABLE_NAME, Plan
from netpersona.dataplane.kernel import Kernel
from netpersona.dataplane.nftview import element_keys, normalise_listing
from netpersona.dataplane.state import AppliedState, StateStore
from netpersona.errors import NetpersonaError
from netpersona.model.jsontree import JSON

__all__ = ["PORT_SET_NAMES", "PortChange", "port_change", "update_ports_in_place"]

PORT_SET_NAMES = frozenset(PORT_SETS.values())


@dataclass(frozen=True, slots=True)
class PortChange:
    """The batch that turns one plan's port sets into another's, and the batch that undoes it."""

    batch: JSON
    undo: JSON
    sets: tuple[str, ...]  # the sets whose elements change, in the plan's order

    @property
    def description(self) -> str:
        return "nftables: update port sets " + ", ".join(self.sets) + " of table inet netpersona"


def _is_port_set(obj: JSON) -> bool:
    body = obj.get("set")
    return body is not None and body.get("name") in PORT_SET_NAMES


def _key(element: Any) -> str:
    return json.dumps(element, sort_keys=True)


def _batch(changes: list[tuple[str, list[Any], list[Any]]]) -> JSON:
    commands: list[JSON] = [{"metainfo": {"json_schema_version": 1}}]
    for name, gone, new in changes:
        target = {"family": TABLE_FAMILY, "table": TABLE_NAME, "name": name}
        if gone:
            commands.append({"delete": {"element": {**target, "elem": gone}}})
        if new:
            commands.append({"add": {"element": {**target, "elem": new}}})
    return {"nftables": commands}


def port_change(old: Sequence[JSON], new: Sequence[JSON]) -> PortChange | None:
    """The in-place change from table objects ``old`` to ``new``, or None when they differ in
    anything but the port sets' elements (or do not differ at all)."""
    if len(old) != len(new):
        return None
    changes: list[tuple[str, list[Any], list[Any]]] = []
    for before, after in zip(old, new, strict=True):
        if before == after:
            continue
        if not (_is_port_set(before) and _is_port_set(after)):
            return None
        was, now = dict(before["set"]), dict(after["set"])
        was_elems, now_elems = was.pop("elem", []), now.pop("elem", [])
        if was != now:
            return None
        was_keys = {_key(e): e for e in was_elems}
        now_keys = {_key(e): e for e in now_elems}
        gone = [e for k, e in was_keys.items() if k not in now_keys]
        added = [e for k, e in now_keys.items() if k not in was_keys]
        if gone or added:
            changes.append((now["name"], gone, added))
    if not changes:
        return None
    undo = [(name, added, gone) for name, gone, added in changes]
    return PortChange(_batch(changes), _batch(undo), tuple(name for name, _, _ in changes))


def _same_but_ports(old: Plan, new: Plan) -> bool:
    return (
        old.peer_sets == new.peer_sets
        and old.tc == new.tc
        and old.routes == new.routes
        and old.rules == new.rules
        and old.sysctls == new.sysctls
        and old.links == new.links
    )


def _listing_with(listing: tuple[JSON, ...], live: dict[str, list[Any]]) -> tuple[JSON, ...]:
    """The recorded normalised listing with the port sets ``live`` holding their listed
    elements (a set listed empty has no ``elem``, as ``nft -j list table`` prints it)."""
    out = []
    for obj in listing:
        body = obj.get("set")
        if body is not None and body.get("name") in live:
            body = {k: v for k, v in body.items() if k != "elem"}
            elements = normalise_listing([{"set": {"elem": live[body["name"]]}}])[0]["set"]
            if elements.get("elem"):
                body["elem"] = elements["elem"]
            out.append({"set": body})
        else:
            out.append(obj)
    return tuple(out)


def update_ports_in_place(
    kernel: Kernel, store: StateStore, plan: Plan, persona: str, clock: Callable[[], float]
) -> PortChange | None:
    """Apply ``plan`` as an in-place port update if it differs from the applied plan only in
    the port sets' elements: one batch, each changed set read back whole and compared with
    the plan, the state recorded. None, with the kernel as it was, if it does not apply or
    anything fails (the caller then applies the plan the full way, which reads everything).
    Called with the store locked."""
    previous = store.load()
    if (
        previous is None
        or previous.persona != persona
        or previous.pending is not None
        or not previous.nft_listing
        or not _same_but_ports(previous.plan, plan)
    ):
        return None
    change = port_change(previous.plan.nftables, plan.nftables)
    if change is None:
        return None
    wanted = {
        obj["set"]["name"]: obj["set"].get("elem", [])
        for obj in plan.nftables
        if _is_port_set(obj) and obj["set"]["name"] in change.sets
    }
    try:
        kernel.nft_load(change.batch)
    except NetpersonaError:
        # Atomic: nothing changed, or (a failure reported after the commit) all of it, which
        # the inverse batch undoes; the full apply that follows reads what the kernel holds.
        with contextlib.suppress(NetpersonaError):
            kernel.nft_load(change.undo)
        return None
    try:
        live = {name: kernel.nft_set(name) for name in change.sets}
        held = all(
            elements is not None
            and element_keys(elements, interval=True) == element_keys(wanted[name], interval=True)
            for name, elements in live.items()
        )
        if held:
            store.save(
                AppliedState(
                    persona=persona,
                    plan=plan,
                    applied_at=clock(),
                    nft_listing=_listing_with(
                        previous.nft_listing, {n: e or [] for n, e in live.items()}
                    ),
                )
            )
            return change
    except NetpersonaError:
        pass
    with contextlib.suppress(NetpersonaError):
        kernel.nft_load(change.undo)
    return None
