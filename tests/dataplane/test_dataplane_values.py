"""The applier's pure parts: parsing what the kernel prints, comparing, persisting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netpersona.compiler import compile_plan
from netpersona.compiler.plan import PeerSets, TcClass
from netpersona.dataplane.kernel import parse_htb_classes, parse_tc_rate, parse_tc_size
from netpersona.dataplane.nftview import element_keys, normalise_listing, table_mismatches
from netpersona.dataplane.peer_sets import peer_set_batch
from netpersona.dataplane.state import (
    AppliedState,
    Originals,
    Pending,
    StateStore,
    plan_from_json,
)
from netpersona.errors import KernelError, StateError
from netpersona.facts import parse_facts
from tests.dataplane.personas import PERSONA_B, persona

# As tc prints it, trailing spaces included.
TC_OUTPUT = (
    "class htb 6e70:1 root rate 11Mbit ceil 11Mbit burst 1600b cburst 1600b \n"
    "class htb 6e70:10 parent 6e70:1 prio 0 rate 1Mbit ceil 11Mbit burst 1600b cburst 1600b \n"
    "class htb 6e70:20 parent 6e70:1 leaf 8001: prio 1 rate 12345Kbit ceil 15Mbit burst 32Kb "
    "cburst 1600b \n"
)


def test_htb_classes_are_read_from_tc_text() -> None:
    classes = parse_htb_classes("eth0", TC_OUTPUT)
    assert classes == [
        TcClass("eth0", "6e70:1", "6e70:", 11_000_000, 11_000_000, 1600, 0),
        TcClass("eth0", "6e70:10", "6e70:1", 1_000_000, 11_000_000, 1600, 0),
        TcClass("eth0", "6e70:20", "6e70:1", 12_345_000, 15_000_000, 32 * 1024, 1),
    ]


def test_rates_and_sizes_in_tc_spelling() -> None:
    assert parse_tc_rate("10Mbit") == 10_000_000
    assert parse_tc_rate("1.5Gbit") == 1_500_000_000
    assert parse_tc_rate("800bit") == 800
    assert parse_tc_size("64Kb/1") == 65536
    assert parse_tc_size("1600b") == 1600
    with pytest.raises(KernelError, match="'10Mbps'"):
        parse_tc_rate("10Mbps")


def test_elements_compare_across_spellings() -> None:
    # nft prints a DSCP by name and may merge adjacent prefixes of an interval set.
    assert element_keys([["10.0.0.1", "ef"]]) == element_keys([["10.0.0.1", 46]])
    merged = [{"prefix": {"addr": "10.0.0.0", "len": 24}}]
    split = [{"prefix": {"addr": "10.0.0.0", "len": 25}}, {"range": ["10.0.0.128", "10.0.0.255"]}]
    assert element_keys(merged, interval=True) == element_keys(split, interval=True)
    assert element_keys(["10.0.0.1"]) != element_keys(["10.0.0.2"])


def test_a_listing_normalises_equal_whatever_traffic_passed() -> None:
    quiet = [
        {"counter": {"name": "drop_protocol", "handle": 3, "packets": 0, "bytes": 0}},
        {"set": {"name": "echo_v4", "flags": ["dynamic"], "elem": [], "handle": 4}},
        {"rule": {"chain": "in", "handle": 9, "expr": [{"counter": {"packets": 0, "bytes": 0}}]}},
    ]
    busy = [
        {"counter": {"name": "drop_protocol", "handle": 7, "packets": 5, "bytes": 300}},
        {"set": {"name": "echo_v4", "flags": ["dynamic"], "elem": ["10.0.0.9"], "handle": 8}},
        {"rule": {"chain": "in", "handle": 2, "expr": [{"counter": {"packets": 4, "bytes": 9}}]}},
    ]
    assert normalise_listing(quiet) == normalise_listing(busy)


def test_table_mismatches_name_what_differs() -> None:
    planned: list[dict[str, Any]] = [
        {"chain": {"name": "input", "hook": "input", "prio": 0, "policy": "accept"}},
        {"set": {"name": "peer_addrs_v4", "type": "ipv4_addr", "elem": ["10.0.0.1"]}},
        {"rule": {"chain": "input", "expr": []}},
    ]
    live: list[dict[str, Any]] = [
        {"chain": {"name": "input", "hook": "input", "prio": 0, "policy": "drop"}},
        {"set": {"name": "peer_addrs_v4", "type": "ipv4_addr"}},
    ]
    assert table_mismatches(planned, live) == [
        "nftables: chain input has policy 'drop', planned 'accept'",
        "nftables: set peer_addrs_v4 holds 0 elements that differ from the 1 planned",
        "nftables: chain input has 0 rules, planned 1",
    ]
    assert table_mismatches(planned, None) == ["nftables: table inet netpersona is missing"]
    assert table_mismatches(planned, planned) == []


def test_a_peer_change_is_one_batch_of_element_changes() -> None:
    old = PeerSets(addrs_v4=("10.0.0.1", "10.0.0.2"), dscp_v4=(("10.0.0.1", 46),))
    new = PeerSets(addrs_v4=("10.0.0.2", "10.0.0.3"), dscp_v4=(("10.0.0.1", 40),))
    present = {"peer_addrs_v4", "peer_dscp_v4"}
    batch, update = peer_set_batch(old, new, present)
    assert batch is not None
    commands = batch["nftables"][1:]
    by_verb = {(verb, body["element"]["name"]): body["element"]["elem"]
               for command in commands for verb, body in command.items()}  # fmt: skip
    assert by_verb[("delete", "peer_addrs_v4")] == ["10.0.0.1"]
    assert by_verb[("add", "peer_addrs_v4")] == ["10.0.0.3"]
    # A changed map value: the key is deleted and added back with the new value.
    assert by_verb[("delete", "peer_dscp_v4")] == ["10.0.0.1"]
    assert (update.added, update.deleted) == (2, 2)
    assert peer_set_batch(new, new, present) == (None, update.__class__(0, 0))


def test_state_round_trips_through_disk(tmp_path: Path) -> None:
    facts = parse_facts({"uplinks": [{"name": "eth0", "addresses": ["10.0.0.5/24"]}]})
    plan = compile_plan(persona(PERSONA_B), facts)
    assert plan_from_json(plan.to_json()) == plan
    store = StateStore(tmp_path / "state")
    assert store.load() is None
    pending = Pending(token="t", deadline=1.0, previous=None)
    state = AppliedState("b", plan, applied_at=2.0, pending=pending)
    store.save(state)
    store.save_originals(Originals(sysctls={"net.ipv4.ip_forward": "0"}, mtu={"eth0": 1500}))
    assert store.load() == state
    assert store.load_originals().mtu == {"eth0": 1500}
    assert [p.name for p in store.directory.iterdir() if p.name.startswith(".")] == []
    store.clear()
    assert store.load() is None
    assert store.load_originals() == Originals()


def test_an_unreadable_state_names_the_file(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.path.write_text("{not json")
    with pytest.raises(StateError, match=r"state\.json"):
        store.load()
