"""A libnftables JSON command document as an nft script (``nft -f``), one command a line.

The compiler emits the table as libnftables JSON and the applier loads that JSON; this is
the one place it becomes text, for people to read and for ``nft -c -f -`` to check. The
script builds exactly the kernel state the JSON builds (a kernel test loads both and
compares ``nft -j list``); whatever cannot be written that way raises :class:`ValueError`
naming the JSON pointer of the offending value.

Pure: data in, text out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from netpersona.nftables.expressions import (
    at,
    fail,
    fields,
    name,
    optional_parts,
    quoted,
    set_elements,
    single,
    statement,
    uint,
    word,
)

__all__ = ["render_batch"]

_FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")
_SET_FLAGS = ("constant", "interval", "timeout", "dynamic")
_SET_POLICIES = ("performance", "memory")
_ID = ("family", "table", "name")


def render_batch(batch: Mapping[str, Any]) -> str:
    """The nft script for a ``{"nftables": [commands]}`` document (libnftables-json(5))."""
    commands = fields(batch, "", ("nftables",))["nftables"]
    if not isinstance(commands, list):
        fail("/nftables", "expected a list of commands")
    lines = []
    for i, command in enumerate(commands):
        line = _command(command, at("/nftables", i))
        if line is not None:
            lines.append(line + "\n")
    return "".join(lines)


def _command(command: object, path: str) -> str | None:
    verb, body = single(command, path)
    if verb == "metainfo":
        fields(body, at(path, verb), (), ("version", "release_name", "json_schema_version"))
        return None
    kind, obj = single(body, at(path, verb))
    render = _OBJECTS.get((verb, kind))
    if render is None:
        fail(at(path, verb), f'"{verb} {kind}" is not supported by the nft renderer')
    return f"{verb} {kind} {render(obj, at(at(path, verb), kind))}"


def _family(body: Mapping[str, Any], path: str) -> str:
    return word(body["family"], at(path, "family"), _FAMILIES)


def _spec(body: Mapping[str, Any], path: str) -> str:
    """``family table name`` of an object inside a table."""
    family = _family(body, path)
    return (
        f"{family} {name(body['table'], at(path, 'table'))} {name(body['name'], at(path, 'name'))}"
    )


def _table(body: object, path: str) -> str:
    b = fields(body, path, ("family", "name"))
    return f"{_family(b, path)} {name(b['name'], at(path, 'name'))}"


def _reference(body: object, path: str) -> str:
    """An object named for delete or flush."""
    return _spec(fields(body, path, _ID), path)


def _chain(body: object, path: str) -> str:
    b = fields(body, path, _ID, ("type", "hook", "prio", "policy"))
    head = _spec(b, path)
    hooked = [key for key in ("type", "hook", "prio") if key in b]
    if not hooked:
        if "policy" in b:
            fail(at(path, "policy"), "a policy needs a base chain (type, hook and prio)")
        return head
    if len(hooked) != 3:
        # nft 1.0.6's JSON parser silently makes a regular chain of a partial base chain.
        fail(path, "a base chain needs all of type, hook and prio")
    prio = b["prio"]
    if isinstance(prio, bool) or not isinstance(prio, int):
        # Likewise for a named priority ("filter"): only a number means a base chain in JSON.
        fail(at(path, "prio"), "expected an integer priority")
    kind = word(b["type"], at(path, "type"), ("filter", "nat", "route"))
    parts = [f"type {kind} hook {word(b['hook'], at(path, 'hook'))} priority {prio};"]
    if "policy" in b:
        parts.append(f"policy {word(b['policy'], at(path, 'policy'), ('accept', 'drop'))};")
    return f"{head} {{ {' '.join(parts)} }}"


def _datatype(value: object, path: str) -> str:
    """A set key or map data type; a list is a concatenation."""
    if isinstance(value, list):
        if len(value) < 2:
            fail(path, "a concatenated type needs at least two types")
        return " . ".join(word(t, at(path, i)) for i, t in enumerate(value))
    return word(value, path)


def _set_body(body: object, path: str, *, is_map: bool) -> str:
    required = (*_ID, "type", "map") if is_map else (*_ID, "type")
    b = fields(body, path, required, ("flags", "elem", "timeout", "gc-interval", "size", "policy"))
    key = _datatype(b["type"], at(path, "type"))
    parts = [f"type {key} : {_datatype(b['map'], at(path, 'map'))};" if is_map else f"type {key};"]
    if "flags" in b:
        flags, fpath = b["flags"], at(path, "flags")
        if not isinstance(flags, list) or not flags:
            fail(fpath, "expected a non-empty list of set flags")
        parts.append(
            f"flags {','.join(word(f, at(fpath, i), _SET_FLAGS) for i, f in enumerate(flags))};"
        )
    parts += optional_parts(
        b,
        path,
        (
            ("timeout", "timeout {}s;", uint),
            ("gc-interval", "gc-interval {}s;", uint),
            ("size", "size {};", uint),
            ("policy", "policy {};", partial(word, allowed=_SET_POLICIES)),
        ),
    )
    if "elem" in b:
        parts.append(f"elements = {set_elements(b['elem'], at(path, 'elem'), mapping=is_map)};")
    return f"{_spec(b, path)} {{ {' '.join(parts)} }}"


def _set(body: object, path: str) -> str:
    return _set_body(body, path, is_map=False)


def _map(body: object, path: str) -> str:
    return _set_body(body, path, is_map=True)


def _counter(body: object, path: str) -> str:
    b = fields(body, path, _ID, ("packets", "bytes"))
    if "packets" not in b and "bytes" not in b:
        return _spec(b, path)
    # nft text takes both values or neither; JSON defaults a missing one to 0.
    packets = uint(b.get("packets", 0), at(path, "packets"))
    octets = uint(b.get("bytes", 0), at(path, "bytes"))
    return f"{_spec(b, path)} {{ packets {packets} bytes {octets} }}"


def _element(body: object, path: str) -> str:
    b = fields(body, path, (*_ID, "elem"))
    # Set or map is not known here: [key, value] pairs are map elements, anything else keys.
    return f"{_spec(b, path)} {set_elements(b['elem'], at(path, 'elem'), mapping=None)}"


def _rule(body: object, path: str) -> str:
    b = fields(body, path, ("family", "table", "chain", "expr"), ("comment",))
    exprs, epath = b["expr"], at(path, "expr")
    if not isinstance(exprs, list) or not exprs:
        fail(epath, "expected a non-empty list of statements")
    family = _family(b, path)
    parts = [family, name(b["table"], at(path, "table")), name(b["chain"], at(path, "chain"))]
    parts += [statement(s, at(epath, i)) for i, s in enumerate(exprs)]
    if "comment" in b:
        parts.append(f"comment {quoted(b['comment'], at(path, 'comment'))}")
    return " ".join(parts)


_OBJECTS: dict[tuple[str, str], Callable[[object, str], str]] = {
    **{(verb, "table"): _table for verb in ("add", "create", "delete", "flush")},
    **{(verb, "chain"): _chain for verb in ("add", "create")},
    **{(verb, "chain"): _reference for verb in ("delete", "flush")},
    **{(verb, "set"): _set for verb in ("add", "create")},
    **{(verb, "map"): _map for verb in ("add", "create")},
    **{(verb, kind): _reference for verb in ("delete", "flush") for kind in ("set", "map")},
    **{(verb, "counter"): _counter for verb in ("add", "create")},
    ("delete", "counter"): _reference,
    **{(verb, "element"): _element for verb in ("add", "create", "delete")},
    **{(verb, "rule"): _rule for verb in ("add", "insert")},
}
