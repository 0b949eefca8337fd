"""The agent's peer path keeps unchanged peers as the same objects: the peers answer parsed
against the last one (PeersAnswerParser) and the view merged from the last one
(PeerViewMerger) give what the from-scratch functions give, and every entry that did not
change is the object it was."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netpersona.agent.answers import PeersAnswerParser, parse_peers_answer
from netpersona.agent.view import PeerViewMerger, merge_peer_views
from netpersona.certs.certificate import PersonaCertificate
from netpersona.errors import MalformedAnswer
from netpersona.records import Peer
from netpersona.testing.certs import make_certificate


def entry(n: int, persona: str = "api", priority: int = 1) -> dict[str, Any]:
    return {
        "instance": f"vm-{n:04d}",
        "addresses": [f"10.1.{n // 250}.{n % 250 + 1}"],
        "persona": persona,
        "priority": priority,
        "labels": {"app": "shop"},
    }


def answer(entries: list[dict[str, Any]], members: list[dict[str, Any]] | None = None) -> Any:
    body: dict[str, Any] = {"peers": copy.deepcopy(entries)}  # a new body, as json.loads gives
    if members is not None:
        body["network"] = {"members": copy.deepcopy(members), "seeds": []}
    return body


# One answer's entries: instance numbers (unique, in the order given) with their persona.
views = st.lists(
    st.tuples(st.integers(0, 60), st.sampled_from(["api", "web"])),
    max_size=30,
    unique_by=lambda t: t[0],
)


@settings(max_examples=200, deadline=None)
@given(first=views, second=views, members=views)
def test_parsing_against_the_last_answer_is_parsing_from_scratch(
    first: list[tuple[int, str]], second: list[tuple[int, str]], members: list[tuple[int, str]]
) -> None:
    parse = PeersAnswerParser()
    member_entries = [entry(n, p, 6) for n, p in members]
    before = parse(answer([entry(n, p) for n, p in first], member_entries))
    body = answer([entry(n, p) for n, p in second], member_entries)
    after = parse(body)
    assert after == parse_peers_answer(body)
    assert parse(body) is after  # the same body again: nothing parsed
    old = {p.instance: p for p in before[0]}
    for peer in after[0]:
        if peer.instance in old and old[peer.instance] == peer:
            assert peer is old[peer.instance]
    assert before[1] is not None
    assert after[1] is not None
    assert all(a is b for a, b in zip(after[1].members, before[1].members, strict=True))


def test_one_peer_joining_leaves_every_other_entry_the_same_object() -> None:
    parse = PeersAnswerParser()
    entries = [entry(n) for n in range(0, 200, 2)]
    served, _ = parse(answer(entries))
    joined, _ = parse(answer([*entries[:10], entry(21), *entries[10:]]))
    assert [p.instance for p in joined] == [p.instance for p in served[:10]] + [
        "vm-0021",
        *(p.instance for p in served[10:]),
    ]
    assert all(a is b for a, b in zip(joined[:10] + joined[11:], served, strict=True))
    # Several leave in a row and one changes: looked up by instance id after a few misses.
    changed = [*entries[:5], entry(10, persona="web"), *entries[12:]]
    again, _ = parse(answer(changed))
    assert again == parse_peers_answer(answer(changed))[0]
    assert again[5] is not joined[5]
    assert again[5].persona == "web"
    assert all(a is b for a, b in zip(again[6:], served[12:], strict=True))


@pytest.mark.parametrize(("field", "value"), [("priority", True), ("priority", 1.0)])
def test_an_entry_equal_to_a_valid_one_but_for_its_json_type_is_still_refused(
    field: str, value: object
) -> None:
    parse = PeersAnswerParser()
    served, _ = parse(answer([entry(1), entry(2)]))
    bad = answer([entry(1), entry(2)])
    bad["peers"][1][field] = value  # True == 1 and 1.0 == 1 in Python, not in the contract
    with pytest.raises(MalformedAnswer, match=f"/peers/1/{field}"):
        parse(bad)
    good = answer([entry(1), entry(2)])
    assert all(a is b for a, b in zip(parse(good)[0], served, strict=True))  # nothing kept


@pytest.mark.parametrize("instance", [["vm-0001"], {"a": 1}, None, 7])
def test_a_new_entry_with_a_bad_instance_is_refused_naming_it(instance: object) -> None:
    parse = PeersAnswerParser()
    parse(answer([entry(n) for n in range(10)]))
    bad = answer([entry(n) for n in range(10)])
    bad["peers"][0:3] = [{**entry(20), "instance": instance}] * 3  # neither next nor after
    with pytest.raises(MalformedAnswer, match="/peers/0/instance"):
        parse(bad)


def cert(n: int, persona: str, issued_at: int) -> PersonaCertificate:
    return make_certificate(
        f"vm-{n:04d}", (f"10.2.0.{n + 1}",), persona=persona, issued_at=issued_at, seq=issued_at
    )


# A sequence of states: the certificates held (instance, persona, issued at), and sometimes a
# new service answer (its peers, as the parser gives them: unchanged entries the same objects).
states = st.lists(
    st.tuples(
        st.lists(
            st.tuples(st.integers(0, 40), st.sampled_from(["api", "web"]), st.integers(990, 1010))
        ),
        st.none() | views,
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(served=views, members=views, steps=states)
def test_merging_from_the_last_view_is_merging_from_scratch(
    served: list[tuple[int, str]],
    members: list[tuple[int, str]],
    steps: list[tuple[list[tuple[int, str, int]], list[tuple[int, str]] | None]],
) -> None:
    merge = PeerViewMerger()
    parse = PeersAnswerParser()
    summary = [entry(n, p, 6) for n, p in members]
    served_view, network = parse(answer([entry(n, p) for n, p in served], summary))
    made: dict[tuple[int, str, int], PersonaCertificate] = {}
    last: tuple[Peer, ...] | None = None
    for held, new_answer in steps:
        if new_answer is not None:
            served_view, network = parse(answer([entry(n, p) for n, p in new_answer], summary))
        assert network is not None
        learned = [made.setdefault(c, cert(*c)) for c in held]
        view = merge(served_view, 1000.0, learned, network.members)
        assert view == merge_peer_views(served_view, 1000.0, learned, network.members)
        if last is not None:
            old = {p.instance: p for p in last}
            for peer in view:
                if peer.instance in old and old[peer.instance] == peer:
                    assert peer is old[peer.instance]
        last = view


def test_an_answer_with_one_more_peer_changes_one_entry_of_the_last_view() -> None:
    merge, parse = PeerViewMerger(), PeersAnswerParser()
    entries = [entry(n) for n in range(0, 100, 2)]
    before = merge(parse(answer(entries))[0], 1000.0, [])
    joined = merge(parse(answer([*entries[:3], entry(5), *entries[3:]]))[0], 1001.0, [])
    assert [p.instance for p in joined] == sorted([*(p.instance for p in before), "vm-0005"])
    assert all(a is b for a, b in zip(joined[:3] + joined[4:], before, strict=True))
    twice = answer([*entries, entries[0]])  # one instance twice: the last entry wins
    assert merge(parse(twice)[0], 1002.0, []) == merge_peer_views(parse(twice)[0], 1002.0, [])


def test_one_certificate_changes_one_entry_of_the_last_view() -> None:
    merge = PeerViewMerger()
    served = parse_peers_answer(answer([entry(n) for n in range(0, 100, 2)]))[0]
    before = merge(served, 1000.0, [])
    joined = merge(served, 1000.0, [cert(7, "api", 1001)])
    assert [p.instance for p in joined] == sorted([*(p.instance for p in before), "vm-0007"])
    assert all(a is b for a, b in zip(joined[:4] + joined[5:], before, strict=True))
    moved = merge(served, 1000.0, [cert(7, "api", 1001), cert(8, "web", 1002)])
    assert moved[5].persona == "web"
    assert moved[4] is joined[4]
    assert all(a is b for a, b in zip(moved[:5] + moved[6:], joined[:5] + joined[6:], strict=True))
    gone = merge(served, 1000.0, [cert(8, "web", 1002)])
    assert gone == merge_peer_views(served, 1000.0, [cert(8, "web", 1002)])
    assert merge(served, 1000.0, []) == before  # back to the service's own entry for vm-0008
