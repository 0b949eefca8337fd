"""Port changes as in-place set updates, against a real kernel: packets, readback, rollback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from netpersona.compiler import compile_plan
from netpersona.compiler.plan import Plan
from netpersona.dataplane import (
    Applier,
    ApplyRolledBack,
    LinuxKernel,
    StateStore,
    read_snapshot,
)
from netpersona.dataplane.drift import detect_drift
from netpersona.dataplane.nftview import normalise_listing
from netpersona.dataplane.state import without_peer_elements
from netpersona.probe.runner import listening, send_probes
from netpersona.testing.kernel_faults import FaultyKernel
from netpersona.testing.topology import Lab, lab
from tests.dataplane.personas import persona

pytestmark = pytest.mark.kernel


def _text(protocols: str) -> str:
    return (
        "network_persona: {communication_mode: unicast, security_profile: medium,"
        f" allowed_protocols: [{protocols}], priority: 3}}\n"
    )


@pytest.fixture(scope="module")
def net() -> Iterator[Lab]:
    with lab() as built:
        yield built


def _plan(net: Lab, protocols: str) -> Plan:
    return compile_plan(persona(_text(protocols)), net.facts(two_uplinks=True))


def _reachable(net: Lab, ports: list[int]) -> set[int]:
    with listening(net.vm, tcp=ports) as listener:
        results = send_probes(
            net.stranger,
            [
                {"id": str(p), "proto": "tcp", "dst": net.vm4, "port": p, "timeout": 0.5}
                for p in ports
            ],
        )
        listener.records()
    return {p for p in ports if results[str(p)]["ok"]}


def _scope(plan: Plan) -> tuple[list[str], list[str]]:
    return [s.key for s in plan.sysctls], ["eth0", "eth1"]


def test_a_port_change_updates_the_sets_in_place(net: Lab, tmp_path: Path) -> None:
    kernel = LinuxKernel(net.vm.name)
    applier = Applier(kernel, StateStore(tmp_path / "state"))
    first = _plan(net, "icmp, tcp/22")
    applier.apply(first, "p")
    handle_before = kernel.nft_table()
    assert _reachable(net, [22, 8080, 8085]) == {22}

    more = _plan(net, "icmp, tcp/22, tcp/8080-8090, udp/5001")
    report = applier.apply(more, "p")

    assert report.steps == (
        "nftables: update port sets allow_tcp, allow_udp of table inet netpersona",
    )
    assert applier.check(more) == []
    assert _reachable(net, [22, 8080, 8085, 8091]) == {22, 8080, 8085}
    state = applier.store.load()
    assert state is not None
    assert state.plan == more
    assert detect_drift(kernel, state, applier.store.load_originals()) == []
    # What the state records is the kernel's listing, as a full apply would have read it.
    assert state.nft_listing == without_peer_elements(normalise_listing(kernel.nft_table() or []))
    # The table was not replaced: its chains keep their handles.
    chains = [o["chain"]["handle"] for o in handle_before or () if "chain" in o]
    assert chains == [o["chain"]["handle"] for o in kernel.nft_table() or () if "chain" in o]

    fewer = _plan(net, "icmp, tcp/8080-8090")
    assert applier.apply(fewer, "p").steps[0].startswith("nftables: update port sets allow_tcp")
    assert applier.check(fewer) == []
    assert _reachable(net, [22, 8080]) == {8080}
    applier.remove()


def test_a_structural_change_still_replaces_the_table(net: Lab, tmp_path: Path) -> None:
    applier = Applier(LinuxKernel(net.vm.name), StateStore(tmp_path / "state"))
    applier.apply(_plan(net, "icmp, tcp/22"), "p")
    every_port = _plan(net, "icmp, tcp")
    report = applier.apply(every_port, "p")
    assert report.steps == ("nftables: replace table inet netpersona",)
    assert _reachable(net, [22, 8080]) == {22, 8080}
    applier.remove()


def test_a_table_changed_behind_the_agents_back_is_found_and_replaced(
    net: Lab, tmp_path: Path
) -> None:
    kernel = LinuxKernel(net.vm.name)
    applier = Applier(kernel, StateStore(tmp_path / "state"))
    applier.apply(_plan(net, "icmp, tcp/22"), "p")
    net.vm.run(["nft", "flush", "chain", "inet", "netpersona", "in_new"])
    more = _plan(net, "icmp, tcp/22, tcp/8080")
    # Like a peer update, a port update reads back the sets it changed; whether the rest of
    # the table is as applied is the drift check's question, and its repair a full apply.
    assert applier.apply(more, "p").steps[0].startswith("nftables: update port sets")
    state = applier.store.load()
    assert state is not None
    assert detect_drift(kernel, state, applier.store.load_originals()) != []
    assert applier.apply(more, "p").steps == ("nftables: replace table inet netpersona",)
    assert applier.check(more) == []
    assert _reachable(net, [22, 8080]) == {22, 8080}
    applier.remove()


@pytest.mark.parametrize("after", [False, True], ids=["fails-before-effect", "fails-after-effect"])
def test_a_fault_at_any_change_leaves_one_persona_or_the_other(
    net: Lab, tmp_path: Path, after: bool
) -> None:
    kernel = LinuxKernel(net.vm.name)
    store = StateStore(tmp_path / "state")
    first, new = _plan(net, "icmp, tcp/22"), _plan(net, "icmp, tcp/8080")
    Applier(kernel, store).apply(first, "p")
    scope = _scope(first)
    before = read_snapshot(kernel, *scope)
    outcomes = set()
    for step in range(1, 5):
        faulty = FaultyKernel(kernel, fail_at=step, after=after)
        failure: ApplyRolledBack | None = None
        try:
            Applier(faulty.kernel, store).apply(new, "p")
        except ApplyRolledBack as exc:
            failure = exc
        if failure is not None:
            # Undone and verified: the first persona, whole.
            assert failure.report.rollback_held, failure.report.rollback_problems
            assert before.differences(read_snapshot(kernel, *scope)) == []
            state = store.load()
            assert state is not None
            assert state.plan == first
            assert _reachable(net, [22, 8080]) == {22}
            outcomes.add("rolled back")
        else:
            # The in-place update failed and was undone, then the full apply made it.
            applier = Applier(kernel, store)
            assert applier.check(new) == []
            state = store.load()
            assert state is not None
            assert state.plan == new
            assert detect_drift(kernel, state, store.load_originals()) == []
            assert _reachable(net, [22, 8080]) == {8080}
            outcomes.add("applied")
            applier.apply(first, "p")
            assert before.differences(read_snapshot(kernel, *scope)) == []
    assert "applied" in outcomes
    Applier(kernel, store).remove()
