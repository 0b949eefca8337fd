"""A policy inventory: the instances a policy is tried on away from the service.

The CLI reads one from a file (``{instances: [...]}``, each an instance in its JSON form,
:class:`~netpersona.records.Instance`, with ``name`` defaulting to the id and no store fields
needed); the service hands the engine its stored records directly. Nothing here reads anything.
"""

from __future__ import annotations

from collections.abc import Mapping

from netpersona.errors import FieldError, InvalidDocument
from netpersona.model.quote import quote
from netpersona.records import Instance, Reader

__all__ = ["parse_inventory"]


def parse_inventory(document: object) -> tuple[Instance, ...]:
    """``{instances: [{id, name, addresses, interfaces, labels, pin}]}`` -> instances, or
    :class:`InvalidDocument` naming every problem."""
    items = document.get("instances") if isinstance(document, Mapping) else None
    if not isinstance(items, list):
        raise InvalidDocument([FieldError("/instances", "expected a list of instances")])
    reader = Reader()
    instances: list[Instance] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(items):
        instance = Instance.read(reader, raw, f"/instances/{index}")
        if instance is None:
            continue
        if instance.id in seen:
            reader.fail(
                f"/instances/{index}/id",
                f"{quote(instance.id)} is used twice (first at /instances/{seen[instance.id]})",
            )
            continue
        seen[instance.id] = index
        instances.append(instance)
    if reader.errors:
        raise InvalidDocument(reader.errors)
    return tuple(instances)
