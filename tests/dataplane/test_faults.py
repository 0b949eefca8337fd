"""Fault injection: whichever kernel change fails, the previous persona stays in force."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from netpersona.compiler import compile_plan
from netpersona.compiler.plan import Plan, Sysctl
from netpersona.dataplane import (
    Applier,
    ApplyRolledBack,
    KernelSnapshot,
    LinuxKernel,
    StateStore,
    read_snapshot,
)
from netpersona.probe.runner import listening, send_probes
from netpersona.testing.kernel_faults import FaultyKernel
from netpersona.testing.topology import Lab, lab
from tests.dataplane.personas import PERSONA_A, PERSONA_B, persona

PERSONAS = {"a": PERSONA_A, "b": PERSONA_B}

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def net() -> Iterator[Lab]:
    with lab() as built:
        yield built


def _scope(*plans: Plan) -> tuple[list[str], list[str]]:
    keys = sorted({s.key for plan in plans for s in plan.sysctls})
    return keys, ["eth0", "eth1"]


def _persona_in_force(net: Lab, name: str) -> None:
    """Packets agree: postgres (A) or ssh (B) is reachable from the LAN, not the other."""
    with listening(net.vm, tcp=[5432, 22]) as listener:
        results = send_probes(
            net.stranger,
            [
                {"id": "pg", "proto": "tcp", "dst": net.vm4, "port": 5432, "timeout": 0.5},
                {"id": "ssh", "proto": "tcp", "dst": net.vm4, "port": 22, "timeout": 0.5},
            ],
        )
        listener.records()
    assert results["pg"]["ok"] == (name == "a")
    assert results["ssh"]["ok"] == (name == "b")


def _expect_rollback(
    applier: Applier,
    plan: Plan,
    before: KernelSnapshot,
    scope: tuple[list[str], list[str]],
    previous: str = "a",
) -> ApplyRolledBack:
    with pytest.raises(ApplyRolledBack) as caught:
        applier.apply(plan, "new")
    report = caught.value.report
    assert report.rollback_held, report.rollback_problems
    assert before.differences(read_snapshot(applier.kernel, *scope)) == []
    state = applier.store.load()
    assert state is not None
    assert state.persona == previous
    return caught.value


@pytest.mark.parametrize("after", [False, True], ids=["fails-before-effect", "fails-after-effect"])
@pytest.mark.parametrize(("old", "new"), [("a", "b"), ("b", "a")])
def test_a_fault_at_every_step_leaves_the_previous_persona(
    net: Lab, tmp_path: Path, after: bool, old: str, new: str
) -> None:
    kernel = LinuxKernel(net.vm.name)
    store = StateStore(tmp_path / "state")
    facts = net.facts(two_uplinks=True)
    plans = {name: compile_plan(persona(text), facts) for name, text in PERSONAS.items()}
    scope = _scope(*plans.values())
    Applier(kernel, store).apply(plans[old], old)
    before = read_snapshot(kernel, *scope)

    counter = FaultyKernel(kernel)
    Applier(counter.kernel, store).apply(plans[new], new)
    steps = len(counter.calls)
    # Every kind of step takes part: links, sysctls, tc, routes, rules and the table.
    kinds = {"link_set", "sysctl_set", "route_add", "nft_load"}
    kinds |= {"qdisc_replace", "class_replace", "rule_add"} if new == "b" else {"qdisc_delete"}
    kinds |= {"route_delete", "rule_delete"} if new == "a" else set()
    assert kinds <= set(counter.calls)
    Applier(kernel, store).apply(plans[old], old)
    assert before.differences(read_snapshot(kernel, *scope)) == []

    for step in range(1, steps + 1):
        faulty = FaultyKernel(kernel, fail_at=step, after=after)
        applier = Applier(faulty.kernel, store)
        error = _expect_rollback(applier, plans[new], before, scope, previous=old)
        assert f"injected fault at change {step}" in str(error)
        if step in (1, steps):
            _persona_in_force(net, old)
    Applier(kernel, store).remove()


def test_a_readback_that_differs_from_the_plan_rolls_back(net: Lab, tmp_path: Path) -> None:
    kernel = LinuxKernel(net.vm.name)
    applier = Applier(kernel, StateStore(tmp_path / "state"))
    facts = net.facts(two_uplinks=True)
    plan_a = compile_plan(persona(PERSONA_A), facts)
    plan_b = compile_plan(persona(PERSONA_B), facts)
    # The kernel stores "01" as 1 and reads back "1": the plan cannot be verified.
    odd = replace(plan_b, sysctls=(*plan_b.sysctls, Sysctl("net.ipv4.conf.eth1.rp_filter", "01")))
    scope = _scope(plan_a, odd)
    applier.apply(plan_a, "a")
    before = read_snapshot(kernel, *scope)

    error = _expect_rollback(applier, odd, before, scope)

    assert "readback" in str(error)
    assert "net.ipv4.conf.eth1.rp_filter" in str(error)
    _persona_in_force(net, "a")
    applier.remove()


def test_a_fault_at_every_step_of_remove_keeps_the_persona(net: Lab, tmp_path: Path) -> None:
    kernel = LinuxKernel(net.vm.name)
    store = StateStore(tmp_path / "state")
    plan_b = compile_plan(persona(PERSONA_B), net.facts(two_uplinks=True))
    scope = _scope(plan_b)
    Applier(kernel, store).apply(plan_b, "b")
    before = read_snapshot(kernel, *scope)
    counter = FaultyKernel(kernel)
    Applier(counter.kernel, store).remove()
    steps = len(counter.calls)
    assert "nft_load" in counter.calls
    Applier(kernel, store).apply(plan_b, "b")

    for step in range(1, steps + 1):
        faulty = FaultyKernel(kernel, fail_at=step, after=step % 2 == 0)
        with pytest.raises(ApplyRolledBack) as caught:
            Applier(faulty.kernel, store).remove()
        assert caught.value.report.rollback_held, caught.value.report.rollback_problems
        assert before.differences(read_snapshot(kernel, *scope)) == []
        state = store.load()
        assert state is not None
        assert state.persona == "b"
    _persona_in_force(net, "b")
    Applier(kernel, store).remove()
