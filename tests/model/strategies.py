"""Hypothesis strategies for documents: junk JSON-like trees, and valid documents mutated."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

# Values a JSON or YAML parser, or a careless caller, can hand a document parser.
HUGE_INTS = st.sampled_from([2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1])
LONE_SURROGATES = st.sampled_from(["\ud800", "a\udfffb", "\udc80x"])
LEAVES: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    HUGE_INTS,
    st.integers(4300, 5000).map(lambda digits: 10**digits),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["100mbit", "64kb", "af41", "tcp/22", "https", "239.1.1.1", "10.0.0.0/8"]),
    st.sampled_from(["web", "db-restricted", "unicast", "restricted", "high", "x-", "~/"]),
    LONE_SURROGATES,
)
KEYS: st.SearchStrategy[Any] = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "network_persona",
            "persona_policy",
            "communication_mode",
            "allowed_protocols",
            "qos_parameters",
            "peers",
            "labels",
            "x-ext",
            "rules",
            "overlays",
            "match",
            "set",
            "when",
        ]
    ),
    st.integers(),
    st.none(),
    LONE_SURROGATES,
)
TREES: st.SearchStrategy[Any] = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(KEYS, children, max_size=5)
    ),
    max_leaves=40,
)


@st.composite
def deep(draw: st.DrawFn) -> object:
    """A list or mapping nested up to 200 levels: past every depth limit, within recursion."""
    value: object = draw(LEAVES)
    shape = draw(st.sampled_from(["lists", "mappings", "both"]))
    for level in range(draw(st.integers(0, 200))):
        in_list = shape == "lists" or (shape == "both" and level % 2 == 0)
        value = [value] if in_list else {"x-d": value}
    return value


def _paths(value: object, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*path, index))
    return found


@st.composite
def mutated(draw: st.DrawFn, document: object) -> object:
    """``document`` with a few of its values replaced, removed, or given new neighbours."""
    result = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(result)))
        if not path:
            continue
        parent = result
        for step in path[:-1]:
            parent = parent[step]  # type: ignore[index]
        action = draw(st.sampled_from(["replace", "remove", "add", "deep"]))
        _mutate(draw, parent, path[-1], action)
    return result


def _mutate(draw: st.DrawFn, parent: Any, key: Any, action: str) -> None:
    if action == "replace":
        parent[key] = draw(TREES)
    elif action == "deep":
        parent[key] = draw(deep())
    elif action == "remove":
        del parent[key]
    elif isinstance(parent, dict):
        parent[draw(KEYS)] = draw(TREES)
    else:
        parent.append(draw(TREES))


@st.composite
def mutated_text(draw: st.DrawFn, text: str) -> bytes:
    """``text``'s bytes with a few bytes replaced, inserted or cut."""
    data = bytearray(text.encode())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["set", "insert", "cut"]))
        if action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif action == "cut":
            del data[at : at + draw(st.integers(1, 40))]
        elif at < len(data):
            data[at] = draw(st.integers(0, 255))
    return bytes(data)


# YAML spellings that have broken parsers before: aliases, tags, huge numbers, odd encodings.
YAML_SNIPPETS = st.sampled_from(
    [
        "&a [1, 2]",
        "*a",
        "!!binary aGk=",
        "!!int x",
        "!!float x",
        "!!bool x",
        "!!timestamp 2024-13-45",
        "2024-13-45",
        "9" * 30,
        "1" * 30 + ":00",
        "0x" + "f" * 30,
        ".nan",
        "-.inf",
        '"\\ud800"',
        '"\\ud83d\\ude00"',
        "{? [a]: b}",
        "<<: {a: 1}",
        "[" * 40 + "]" * 40,
        "~",
        "'\u2028'",
    ]
)


def strict_json(value: object) -> bytes:
    """The value as strict JSON bytes: raises if any part is not (NaN, surrogates, ...)."""
    return json.dumps(value, allow_nan=False, ensure_ascii=False, sort_keys=True).encode("utf-8")


def only_raises(expected: type[Exception], call: Callable[[], object]) -> object | None:
    """``call()``, or None if it raised ``expected``; any other exception fails the test."""
    try:
        return call()
    except expected:
        return None
