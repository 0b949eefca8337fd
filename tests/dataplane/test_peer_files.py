"""The peer sets on disk: a base file per generation and a journal of in-place updates.

Pure file tests (no kernel): what is written is what is read back by a fresh store, in bytes
proportional to the change, and a crash at any point leaves a state that loads whole.
"""

from __future__ import annotations

import random
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from netpersona.compiler import compile_plan
from netpersona.compiler.plan import PeerSets
from netpersona.dataplane import peer_files
from netpersona.dataplane.peer_files import PeerFiles, _replay, peer_delta
from netpersona.dataplane.state import AppliedState, StateStore
from netpersona.errors import StateError
from netpersona.facts import parse_facts
from netpersona.model import parse_persona_text

PERSONA = parse_persona_text(
    """
network_persona:
  communication_mode: restricted
  security_profile: high
  allowed_protocols: [postgres]
  priority: 2
  peers: [{persona: api}]
"""
)


def _addresses(first: int, count: int) -> tuple[str, ...]:
    return tuple(str(IPv4Address(0x0A800000 + i)) for i in range(first, first + count))


def _peers(first: int, count: int, dscp: int = 46) -> PeerSets:
    addrs = _addresses(first, count)
    return PeerSets(addrs_v4=addrs, dscp_v4=tuple((a, dscp) for a in addrs[:3]))


def _state(peers: PeerSets) -> AppliedState:
    facts = parse_facts({"uplinks": [{"name": "eth0", "addresses": ["10.0.0.5/24"]}]})
    plan = compile_plan(PERSONA, facts)
    return AppliedState("db", replace(plan, peer_sets=peers), 1.0)


def test_the_delta_replayed_over_the_old_sets_gives_the_new() -> None:
    rnd = random.Random(7)
    universe = _addresses(0, 80)
    for _ in range(200):
        old_addrs, new_addrs = (
            tuple(sorted(rnd.sample(universe, rnd.randint(0, 50)), key=universe.index))
            for _ in range(2)
        )
        old = PeerSets(old_addrs, (), tuple((a, rnd.choice([10, 46])) for a in old_addrs), ())
        new = PeerSets(new_addrs, (), tuple((a, rnd.choice([10, 46])) for a in new_addrs), ())
        delta = peer_delta(old, new)
        assert _replay(old, [delta.to_json()]) == new
        # Replaying it again changes nothing: the last record naming a key decides it.
        assert _replay(new, [delta.to_json()]) == new


def test_a_join_is_recorded_in_bytes_of_the_change(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save(_state(_peers(0, 20_000)))
    base = sorted(tmp_path.glob("peers.*.json"))
    assert len(base) == 1
    state = store.load()
    assert state is not None
    joined = _peers(0, 20_001)
    store.save_peers(state, joined, peer_delta(state.plan.peer_sets, joined))
    journal = base[0].with_suffix(".journal")
    assert 0 < journal.stat().st_size < 200
    assert sorted(tmp_path.glob("peers.*.json")) == base  # the base was not rewritten
    fresh = StateStore(tmp_path).load()
    assert fresh is not None
    assert fresh.plan.peer_sets == joined
    assert fresh.plan == store.load().plan  # type: ignore[union-attr]


def test_a_record_cut_short_by_a_crash_is_ignored(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save(_state(_peers(0, 10)))
    state = store.load()
    assert state is not None
    joined = _peers(0, 11)
    store.save_peers(state, joined, peer_delta(state.plan.peer_sets, joined))
    journal = next(tmp_path.glob("peers.*.journal"))
    with journal.open("ab") as handle:
        handle.write(b'{"addrs_v4":{"delete":[],"add":["10.128.')
    fresh = StateStore(tmp_path).load()
    assert fresh is not None
    assert fresh.plan.peer_sets == joined


def test_a_damaged_journal_line_is_an_error_that_names_the_file(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save(_state(_peers(0, 10)))
    state = store.load()
    assert state is not None
    joined = _peers(0, 11)
    store.save_peers(state, joined, peer_delta(state.plan.peer_sets, joined))
    journal = next(tmp_path.glob("peers.*.journal"))
    journal.write_bytes(b"not json\n" + journal.read_bytes())
    with pytest.raises(StateError, match=r"peers\..*\.journal: line 1"):
        StateStore(tmp_path).load()


def test_a_crash_before_state_json_names_a_new_generation_keeps_the_old(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    first = _state(_peers(0, 10))
    store.save(first)
    # A new generation written, then the crash: state.json still names the old one.
    PeerFiles(tmp_path).write_base(_peers(50, 5), store._write)
    assert len(list(tmp_path.glob("peers.*.json"))) == 2
    fresh = StateStore(tmp_path).load()
    assert fresh is not None
    assert fresh.plan.peer_sets == first.plan.peer_sets
    # The next save leaves only the generation it names.
    StateStore(tmp_path).save(_state(_peers(0, 12)))
    assert len(list(tmp_path.glob("peers.*.json"))) == 1


def test_a_long_journal_is_folded_into_a_new_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peer_files, "COMPACT_MIN_BYTES", 1024)
    store = StateStore(tmp_path)
    store.save(_state(_peers(0, 10)))
    generations = set()
    for count in range(11, 111):
        state = store.load()
        assert state is not None
        peers = _peers(0, count)
        store.save_peers(state, peers, peer_delta(state.plan.peer_sets, peers))
        generations |= {p.name for p in tmp_path.glob("peers.*.json")}
    assert len(generations) > 1  # compacted at least once
    assert len(list(tmp_path.glob("peers.*"))) <= 2
    fresh = StateStore(tmp_path).load()
    assert fresh is not None
    assert fresh.plan.peer_sets == _peers(0, 110)


def test_another_process_writing_the_state_is_seen(tmp_path: Path) -> None:
    mine, theirs = StateStore(tmp_path), StateStore(tmp_path)
    mine.save(_state(_peers(0, 10)))
    assert mine.load() is not None
    state = theirs.load()
    assert state is not None
    joined = _peers(0, 12)
    theirs.save_peers(state, joined, peer_delta(state.plan.peer_sets, joined))
    seen = mine.load()
    assert seen is not None
    assert seen.plan.peer_sets == joined
    theirs.clear()
    assert mine.load() is None
    assert list(tmp_path.glob("peers.*")) == []
