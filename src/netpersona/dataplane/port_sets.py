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

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from netpersona.compiler.plan import PORT_SETS, TABLE_FAMILY, TABLE_NAME
from netpersona.model.jsontree import JSON

__all__ = ["PORT_SET_NAMES", "PortChange", "port_change"]

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
