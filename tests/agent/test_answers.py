"""The service's answers as the agent accepts them: every documented shape, and the garbage
that must be refused whole (MalformedAnswer), named by path and pointer."""

from __future__ import annotations

import contextlib
import gc
import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netpersona.agent.answers import (
    MAX_DEPTH,
    MAX_TOKEN_LENGTH,
    decode_json,
    json_depth,
    parse_certificate,
    parse_instance,
    parse_key_set,
    parse_network,
    parse_peer_view,
    parse_persona_answer,
    parse_revision,
    parse_token,
)
from netpersona.agent.backoff import RetryGate
from netpersona.errors import MalformedAnswer
from netpersona.testing.certs import fixed_key, key_set

NO_PERSONA: dict[str, Any] = {
    "assigned": False,
    "name": None,
    "version": None,
    "overlays": [],
    "network_persona": None,
}
ASSIGNED: dict[str, Any] = {
    "assigned": True,
    "name": "web",
    "version": 4,
    "overlays": ["threat-raised"],
    "digest": "sha256:ab",
    "network_persona": {"communication_mode": "unicast"},
}


def test_the_exact_no_persona_form_means_remove() -> None:
    answer = parse_persona_answer(NO_PERSONA)
    assert (answer.name, answer.version, answer.document) == (None, None, None)


def test_an_assigned_persona_is_taken_and_new_fields_are_ignored() -> None:
    answer = parse_persona_answer({**ASSIGNED, "served_by": "a newer service"})
    assert (answer.name, answer.version, answer.overlays) == ("web", 4, ("threat-raised",))
    assert answer.digest == "sha256:ab"
    assert answer.document == {"communication_mode": "unicast"}


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({}, "/assigned"),  # used to read as "no persona": the whole table went
        ({"network_persona": None}, "/assigned"),
        ({**NO_PERSONA, "assigned": None}, "/assigned"),
        ({**NO_PERSONA, "assigned": "false"}, "/assigned"),
        ({**NO_PERSONA, "assigned": 0}, "/assigned"),
        ({**NO_PERSONA, "name": "web"}, "/name"),
        ({**NO_PERSONA, "version": 0}, "/version"),
        ({**NO_PERSONA, "overlays": ["x"]}, "/overlays"),
        ({k: v for k, v in NO_PERSONA.items() if k != "overlays"}, "/overlays"),
        ({**NO_PERSONA, "network_persona": {}}, "/network_persona"),
        ({**ASSIGNED, "name": ""}, "/name"),
        ({**ASSIGNED, "version": 0}, "/version"),
        ({**ASSIGNED, "version": True}, "/version"),
        ({**ASSIGNED, "version": "4"}, "/version"),
        ({**ASSIGNED, "overlays": "x"}, "/overlays"),
        ({**ASSIGNED, "overlays": [1]}, "/overlays"),
        ({k: v for k, v in ASSIGNED.items() if k != "digest"}, "/digest"),
        ({**ASSIGNED, "network_persona": None}, "/network_persona"),
        ({**ASSIGNED, "network_persona": ["unicast"]}, "/network_persona"),
    ],
)
def test_anything_short_of_either_form_is_refused(body: dict[str, Any], pointer: str) -> None:
    with pytest.raises(MalformedAnswer, match=f"GET /v1/instance/network_persona: {pointer}:"):
        parse_persona_answer(body)


def test_instance_interfaces_that_are_not_a_list_are_refused() -> None:
    with pytest.raises(MalformedAnswer, match="/interfaces: 5 is not a list"):
        parse_instance({"id": "vm1", "interfaces": 5})


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({}, "/id"),
        ({"id": 7}, "/id"),
        ({"id": "vm1", "interfaces": ["eth0"]}, "/interfaces/0"),
        ({"id": "vm1", "interfaces": [{"tier": "premium"}]}, "/interfaces/0/name"),
        ({"id": "vm1", "interfaces": [{"name": "eth0", "tier": "gold"}]}, "/interfaces/0/tier"),
    ],
)
def test_malformed_instance_answers_are_refused(body: dict[str, Any], pointer: str) -> None:
    with pytest.raises(MalformedAnswer, match=f"GET /v1/instance: {pointer}:"):
        parse_instance(body)


@pytest.mark.parametrize(
    "entry",
    [
        {"addresses": ["10.0.0.1"]},
        {"instance": "vm7", "addresses": "10.0.0.1"},
        {"instance": "vm7", "addresses": [7]},
        {"instance": "vm7", "addresses": ["10.0.0.1"], "persona": 3},
        {"instance": "vm7", "addresses": ["10.0.0.1"], "priority": 9},
        {"instance": "vm7", "addresses": ["10.0.0.1"], "priority": True},
        {"instance": "vm7", "addresses": ["10.0.0.1"], "labels": {"app": 1}},
        {"instance": "vm7", "addresses": ["10.0.0.1"], "labels": ["app"]},
    ],
)
def test_malformed_peer_entries_are_refused(entry: dict[str, Any]) -> None:
    with pytest.raises(MalformedAnswer, match=r"GET /v1/instance/peers: .*/peers/0"):
        parse_peer_view({"peers": [entry]})


def test_a_peer_without_a_persona_has_priority_zero() -> None:
    entry = {"instance": "vm7", "addresses": ["10.0.0.7"], "persona": None, "priority": 0}
    (peer,) = parse_peer_view({"peers": [entry]})
    assert (peer.persona, peer.priority) == (None, 0)


def test_the_network_part_of_the_peers_answer() -> None:
    body = {
        "peers": [],
        "network": {
            "members": [{"instance": "top", "addresses": ["10.0.0.7"], "priority": 7, "dscp": 46}],
            "seeds": [{"instance": "b", "addresses": ["10.0.0.2"]}],
            "truncated": False,
        },
    }
    network = parse_network(body)
    assert network is not None
    assert [(p.instance, p.priority, p.dscp) for p in network.members] == [("top", 7, 46)]
    assert [p.instance for p in network.seeds] == ["b"]
    # A service without the network part: nothing, not an error.
    assert parse_network({"peers": []}) is None


@pytest.mark.parametrize(
    ("network", "pointer"),
    [
        ([], "/network"),
        ({"members": {}}, "/network/members"),
        ({"seeds": [{"addresses": ["10.0.0.2"]}]}, "/network/seeds/0"),
        (
            {"members": [{"instance": "t", "addresses": ["10.0.0.7"], "priority": 8}]},
            "/network/members/0",
        ),
        ({"truncated": "no"}, "/network/truncated"),
    ],
)
def test_a_malformed_network_part_is_refused(network: object, pointer: str) -> None:
    with pytest.raises(MalformedAnswer, match=f"GET /v1/instance/peers: .*{pointer}"):
        parse_network({"peers": [], "network": network})


NOT_TOKENS = [
    b"",
    b"   ",
    "t\u00f6k\u00e9n".encode(),
    b"a b",
    b"a\x00b",
    b"x" * (MAX_TOKEN_LENGTH + 1),
]


@pytest.mark.parametrize("raw", NOT_TOKENS)
def test_a_token_that_cannot_go_in_a_header_is_refused(raw: bytes) -> None:
    with pytest.raises(MalformedAnswer, match="PUT /v1/token"):
        parse_token(raw)


def test_a_good_token_is_taken_without_its_newline() -> None:
    assert parse_token(b"AQAEAbc-_=.~\n") == "AQAEAbc-_=.~"


def test_depth_is_counted_on_the_bytes_outside_strings() -> None:
    assert json_depth(b'{"a": [1, {"b": "[[[{{{\\"]]]"}]}') == 3
    assert json_depth(b"[]") == 1
    assert json_depth(b"7") == 0


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\n'),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=3), inner, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values, most=st.integers(0, 8))
def test_depth_is_the_nesting_of_the_json_capped_past_the_most(value: object, most: int) -> None:
    for raw in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=1)):
        assert json_depth(raw.encode(), most) == min(_depth(value), most + 1)


@pytest.mark.parametrize("raw", [b'{"a": [1]}', b"{not json"])
def test_decoding_leaves_the_collector_as_it_found_it(raw: bytes) -> None:
    assert gc.isenabled()
    with contextlib.suppress(MalformedAnswer):
        decode_json(raw, "x")
    assert gc.isenabled()
    gc.disable()
    try:
        with contextlib.suppress(MalformedAnswer):
            decode_json(raw, "x")
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_deep_nesting_is_refused_before_parsing() -> None:
    deep = b'{"a":' * 2000 + b"1" + b"}" * 2000
    started = time.process_time()
    with pytest.raises(MalformedAnswer, match="nested deeper than 32 levels"):
        decode_json(deep, "GET /v1/instance/network_persona")
    assert time.process_time() - started < 1
    ok = b'{"a":' * (MAX_DEPTH - 1) + b"[1]" + b"}" * (MAX_DEPTH - 1)
    assert isinstance(decode_json(ok, "x"), dict)
    with pytest.raises(MalformedAnswer, match="deeper"):
        decode_json(b"[" + ok + b"]", "x")


@pytest.mark.parametrize("raw", [b"\x00\xff", b"[1, 2]", b'"text"', b"{", b"null"])
def test_an_answer_that_is_not_a_json_object_is_refused(raw: bytes) -> None:
    with pytest.raises(MalformedAnswer, match="GET /v1/instance: /:"):
        decode_json(raw, "GET /v1/instance")


def test_certificate_answers() -> None:
    assert parse_certificate({"certificate": None, "expires_at": None, "seq": None}) is None
    assert parse_certificate({"certificate": "eyJ.a.b"}) == "eyJ.a.b"
    for bad in (5, "", "\u00e9", "x" * 20000):
        with pytest.raises(MalformedAnswer, match="/certificate"):
            parse_certificate({"certificate": bad})


@pytest.mark.parametrize(
    "body", [{}, {"keys": 5}, {"keys": []}, {"keys": [5]}, {"keys": [{"kty": 5}]}]
)
def test_malformed_key_sets_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(MalformedAnswer, match="GET /v1/keys"):
        parse_key_set(body)


def test_a_key_set_is_taken() -> None:
    keys = key_set(fixed_key("k1"))
    assert parse_key_set(keys.to_jwks()).key_ids == keys.key_ids


def test_a_plan_that_failed_is_retried_after_a_doubling_wait_and_a_new_one_at_once() -> None:
    gate = RetryGate(base=5.0, cap=300.0)
    waits = []
    now = 0.0
    for _ in range(9):
        assert gate.allows("plan-a", now)
        waits.append(gate.failed("plan-a", now))
        assert not gate.allows("plan-a", now + waits[-1] - 0.1)
        now += waits[-1]
    assert waits == [5, 10, 20, 40, 80, 160, 300, 300, 300]
    # Another plan (the service said something new) goes at once, and starts its own count.
    assert gate.allows("plan-b", now - 1)
    assert gate.failed("plan-b", now) == 5
    gate.succeeded()
    assert gate.allows("plan-b", now)


def test_retries_of_one_failed_plan_in_ten_seconds() -> None:
    """The old agent tried the same failed plan about four times in 10 s."""
    gate = RetryGate()
    tries = 0
    for tenth in range(100):
        now = tenth / 10
        if gate.allows("plan", now):
            tries += 1
            gate.failed("plan", now)
    assert tries == 2  # at 0 s and at 5 s


def test_a_revision_header_is_a_bounded_whole_number_or_ignored() -> None:
    assert parse_revision("42") == 42
    assert parse_revision(" 7 ") == 7
    assert parse_revision("9" * 18) == int("9" * 18)
    for bad in (None, "", "-1", "+1", "1.0", "1e3", "\u00b2", "0x10", "9" * 19, "1 2"):
        assert parse_revision(bad) is None, bad
