"""A document's text is read within its limits: every way in is InvalidDocument, never a crash,
a long wait or a gigabyte (the alias bomb, deep nesting, huge integers, the wrong encoding)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from netpersona.errors import FieldError, InvalidDocument
from netpersona.model import load_document, parse_persona, parse_persona_text
from netpersona.model.jsontree import canonical_json
from netpersona.model.limits import PERSONA_LIMITS, POLICY_LIMITS

HEAD = (
    "network_persona:\n  communication_mode: unicast\n  security_profile: low\n"
    "  allowed_protocols: [ssh]\n"
)
GOOD = HEAD + "  priority: 1\n"


def alias_bomb(prefix: str = "x-") -> list[str]:
    """Nine levels of nine aliases: 9**9 (387 million) strings once expanded, in ~400 bytes."""
    lines = [f'{prefix}a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 9):
        lines.append(f"{prefix}a{level}: &a{level} [{','.join([f'*a{level - 1}'] * 9)}]")
    return [f"  {line}\n" for line in lines]


def problems(text: str | bytes) -> list[FieldError]:
    with pytest.raises(InvalidDocument) as caught:
        parse_persona_text(text)
    return list(caught.value.errors)


def only(text: str | bytes) -> FieldError:
    errors = problems(text)
    assert len(errors) == 1, errors
    return errors[0]


def test_alias_bomb_in_an_extension_is_refused_at_once() -> None:
    """The 435-byte bomb under an x- key used to pass and be stored as 63.5 MB."""
    text = GOOD + "".join(alias_bomb())
    assert len(text.encode()) < 600
    started = time.monotonic()
    error = only(text)
    assert error == FieldError("", PERSONA_LIMITS.too_many())
    assert "10,000 values with its aliases expanded" in error.message
    assert time.monotonic() - started < 5  # milliseconds in practice; it used to be minutes


def test_alias_bomb_in_priority_is_refused_before_any_field_is_read() -> None:
    """A bomb where a number belongs used to make the error message itself expand it."""
    text = HEAD + "".join(alias_bomb()) + "  priority: *a8\n"
    started = time.monotonic()
    assert only(text).message == PERSONA_LIMITS.too_many()
    assert time.monotonic() - started < 5


def test_a_bomb_of_long_strings_is_refused_by_expanded_size() -> None:
    """Few values, but each a long string: the expanded text counts, not only the values."""
    long = "y" * 60_000
    text = GOOD + f"  x-a: &a {long}\n  x-b: [*a, *a, *a, *a, *a]\n"
    assert only(text).message == PERSONA_LIMITS.too_large_expanded()


def test_aliases_within_the_limits_are_fine() -> None:
    text = GOOD + "  x-tags: &t [a, b]\n  x-more: {tags: *t}\n"
    assert dict(parse_persona_text(text).extensions)["x-more"] == {"tags": ["a", "b"]}


def test_a_recursive_alias_is_refused() -> None:
    error = only(GOOD + "  x-loop: &loop [*loop]\n")
    assert error.pointer == "/network_persona/x-loop/0"


@pytest.mark.parametrize(
    "nested",
    [
        "[" * 5000 + "]" * 5000,
        "{a: " * 5000 + "1" + "}" * 5000,
        "\n    " + "- " * 400 + "1",
    ],
    ids=["flow-lists", "flow-mappings", "block-lists"],
)
def test_deep_nesting_is_refused_without_recursing(nested: str) -> None:
    error = only(GOOD + "  x-deep: " + nested + "\n")
    assert error.pointer == ""
    assert "nests deeper than 32 levels" in error.message


def test_depth_32_is_accepted_and_33_is_not() -> None:
    # The document and network_persona are two levels: x-deep may add 30 more.
    assert parse_persona_text(GOOD + "  x-deep: " + "[" * 30 + "]" * 30 + "\n")
    assert "deeper than 32" in only(GOOD + "  x-deep: " + "[" * 31 + "]" * 31 + "\n").message


def test_depth_through_aliases_counts_as_expanded() -> None:
    deep = "[" * 20 + "]" * 20
    text = GOOD + f"  x-a: &a {deep}\n  x-b: " + "[" * 15 + "*a" + "]" * 15 + "\n"
    error = only(text)
    assert "nests deeper than 32 levels" in error.message


@pytest.mark.parametrize("digits", [20, 4301, 100_000])
def test_integers_past_19_digits_are_refused_unparsed(digits: int) -> None:
    """4,301 digits used to raise Python's int max str digits ValueError: a traceback."""
    for text in (
        HEAD + "  priority: " + "9" * digits + "\n",
        GOOD + "  x-count: -" + "1" * digits + "\n",
        GOOD + "  x-seconds: " + "1" * (digits - 4) + ":00:00\n",
    ):
        error = only(text)
        assert error.pointer.startswith("/network_persona/")
        assert f"an integer of {digits:,} digits is too large" in error.message


@pytest.mark.parametrize("value", [2**63, 10**19 - 1, -(2**63) - 1])
def test_integers_past_64_bits_are_field_errors_anywhere(value: int) -> None:
    assert only(GOOD + f"  x-n: {value}\n") == FieldError(
        "/network_persona/x-n",
        f"{value} is outside the signed 64-bit integers a document may hold",
    )
    assert only(HEAD + f"  priority: {value}\n").pointer == "/network_persona/priority"
    error = only(GOOD + f"  qos_parameters: {{max_connections: {value}}}\n")
    assert error.pointer == "/network_persona/qos_parameters/max_connections"
    assert "out of range (expected an integer 1..2147483647)" in error.message


def test_the_largest_64_bit_integer_is_kept_exactly() -> None:
    persona = parse_persona_text(GOOD + f"  x-n: {2**63 - 1}\n  x-m: {-(2**63)}\n")
    assert dict(persona.extensions) == {"x-n": 2**63 - 1, "x-m": -(2**63)}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (GOOD.encode("utf-16"), "is UTF-16 (it starts with a UTF-16 byte order mark)"),
        (GOOD.encode("utf-16-be"), "contains a NUL byte at line 1 (byte 0)"),
        (GOOD.encode("utf-32"), "is UTF-32"),
        ((GOOD + "  x-n: caf\xe9\n").encode("latin-1"), "is not UTF-8: byte 0xe9 at line 6"),
        (b"\xff\xfe" + b"garbage", "is UTF-16"),
        ((GOOD + "  x-n: a\0b\n").encode(), "contains a NUL byte at line 6"),
        ((GOOD + "  x-n: a\ufeffb\n").encode(), "contains a byte order mark (U+FEFF) at line 6"),
        ((GOOD + "  x-n: a\x01b\n").encode(), "not valid YAML or JSON"),
    ],
    ids=["utf16-bom", "utf16-no-bom", "utf32", "latin1", "bom-only", "nul", "inner-bom", "ctrl"],
)
def test_the_wrong_encoding_is_an_error_at_the_root(data: bytes, message: str) -> None:
    error = only(data)
    assert error.pointer == ""
    assert message in error.message


def test_a_leading_utf8_byte_order_mark_is_allowed() -> None:
    """YAML 1.2 (section 5.2) allows one at the start, and Windows editors write it."""
    assert parse_persona_text(b"\xef\xbb\xbf" + GOOD.encode()).priority == 1
    assert parse_persona_text("\ufeff" + GOOD).priority == 1


def test_text_with_a_lone_surrogate_is_refused() -> None:
    assert "lone surrogate" in only(GOOD + "  x-n: a\ud800\n").message


def test_escaped_surrogates_join_into_one_character_or_are_refused() -> None:
    """JSON spells U+1F600 as two escapes; one alone is not text."""
    persona = parse_persona_text(GOOD + '  x-smile: "\\ud83d\\ude00"\n')
    assert dict(persona.extensions)["x-smile"] == "\U0001f600"
    assert only(GOOD + '  x-half: "\\ud83d"\n') == FieldError(
        "/network_persona/x-half", "holds a lone surrogate (U+D83D), which is not Unicode text"
    )


def test_input_size_limits() -> None:
    filler = "#" * (PERSONA_LIMITS.max_input_bytes - len(GOOD) - 1) + "\n"
    assert parse_persona_text(GOOD + filler).priority == 1
    too_large = GOOD + filler + "#"
    for text in (too_large, too_large.encode()):
        assert only(text) == FieldError("", "is larger than 256 KiB, the most a persona may be")
    policy = "rules: []\n" + "#" * POLICY_LIMITS.max_input_bytes
    with pytest.raises(InvalidDocument) as caught:
        load_document(policy, limits=POLICY_LIMITS)
    assert caught.value.errors == (
        FieldError("", "is larger than 1 MiB, the most a policy may be"),
    )


def test_the_canonical_persona_is_at_most_64_kib() -> None:
    body = {
        "communication_mode": "unicast",
        "security_profile": "low",
        "allowed_protocols": ["ssh"],
        "priority": 1,
    }
    room = PERSONA_LIMITS.max_canonical_bytes - len(canonical_json({**body, "x-n": ""}))
    assert parse_persona({**body, "x-n": "a" * room})
    with pytest.raises(InvalidDocument) as caught:
        parse_persona({"network_persona": {**body, "x-n": "a" * (room + 1)}})
    assert caught.value.errors == (
        FieldError(
            "/network_persona",
            "is 65,537 bytes as canonical JSON; a persona may be at most 64 KiB",
        ),
    )


@pytest.mark.parametrize(
    ("value", "pointer", "message"),
    [
        (float("nan"), "/network_persona/x-n", "NaN is not a JSON number"),
        (float("inf"), "/network_persona/x-n", "Infinity is not a JSON number"),
        ({1: "a"}, "/network_persona/x-n/1", "key 1 is not a string"),
        ({"\udc80": 1}, "/network_persona/x-n/\udc80", "the key holds a lone surrogate"),
        (b"bytes", "/network_persona/x-n", "bytes is not a JSON value"),
        ({"a": [1, float("-inf")]}, "/network_persona/x-n/a/1", "-Infinity is not a JSON"),
    ],
)
def test_extension_values_must_be_strict_json(value: object, pointer: str, message: str) -> None:
    document: dict[str, Any] = {
        "network_persona": {
            "communication_mode": "unicast",
            "security_profile": "low",
            "allowed_protocols": [],
            "priority": 0,
            "x-n": value,
        }
    }
    with pytest.raises(InvalidDocument) as caught:
        parse_persona(document)
    assert [e.pointer for e in caught.value.errors] == [pointer]
    assert message in caught.value.errors[0].message


def test_yaml_values_json_has_not_are_refused_or_kept_as_text() -> None:
    persona = parse_persona_text(GOOD + "  x-when: 2024-01-01\n  x-bad-date: 2024-13-45\n")
    assert dict(persona.extensions) == {"x-when": "2024-01-01", "x-bad-date": "2024-13-45"}
    for tagged in ("!!binary aGk=", "!!set {a: null}", "!!omap [a: 1]", "!!timestamp 2024-01-01"):
        assert (
            "is not allowed (a document holds JSON values only)"
            in only(GOOD + f"  x-n: {tagged}\n").message
        )
    for tagged, kind in (("!!int abc", "an integer"), ("!!bool abc", "a boolean")):
        assert f"'abc' is not {kind}" in only(GOOD + f"  x-n: {tagged}\n").message
    assert "'abc' is not a number" in only(GOOD + "  x-n: !!float abc\n").message


def test_a_python_built_alias_bomb_is_refused_without_expanding_it() -> None:
    """The HTTP API hands parse_persona plain data; a shared-reference graph is measured too."""
    bomb: object = ["lol"] * 9
    for _ in range(30):
        bomb = [bomb] * 9
    with pytest.raises(InvalidDocument) as caught:
        parse_persona(
            {
                "communication_mode": "unicast",
                "security_profile": "low",
                "allowed_protocols": [],
                "priority": bomb,
            }
        )
    assert caught.value.errors == (FieldError("", PERSONA_LIMITS.too_many()),)
    cycle: list[object] = []
    cycle.append(cycle)
    with pytest.raises(InvalidDocument) as caught:
        parse_persona({"communication_mode": "unicast", "x-loop": cycle})
    assert caught.value.errors == (FieldError("/x-loop/0", "holds itself (a cycle is not JSON)"),)
