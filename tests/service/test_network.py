"""Each VM's network part of its peers answer: gossip seeds and the priority summary."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from netpersona.records import Instance, Interface, Peer
from netpersona.service.network import (
    MAX_MEMBERS,
    MAX_SEEDS,
    SUCCESSORS,
    NetworkDiff,
    NetworkIndex,
    member_json,
    seed_json,
)
from tests.service.conftest import Service, persona_doc


def fleet(n: int, priority: int = 0, subnet: str = "10.1") -> dict[str, Instance]:
    return {
        f"vm{i}": Instance(
            f"vm{i}",
            f"vm{i}",
            (f"{subnet}.{i // 250}.{i % 250 + 1}",),
            (Interface("eth0", (f"{subnet}.{i // 250}.{i % 250 + 1}/16",)),),
        )
        for i in range(n)
    }


def index(
    instances: dict[str, Instance],
    priorities: dict[str, int] | None = None,
    without_persona: frozenset[str] = frozenset(),
) -> NetworkIndex:
    def peer(instance_id: str) -> Peer:
        instance = instances[instance_id]
        return Peer(
            instance=instance.id,
            addresses=tuple(ip_address(a) for a in instance.addresses),
            persona=None if instance_id in without_persona else "secret-persona",
            priority=(priorities or {}).get(instance_id, 0),
            labels=(("team", "secret"),),
        )

    return NetworkIndex(instances, peer)


def test_seeds_are_bounded_deterministic_and_spread_evenly() -> None:
    instances = fleet(200)
    net = index(instances)
    seeds = {i: [p.instance for p in net.seeds(i)] for i in instances}
    assert all(len(s) == MAX_SEEDS and i not in s for i, s in seeds.items())
    assert seeds == {i: [p.instance for p in index(instances).seeds(i)] for i in instances}
    # Every VM is a successor seed of exactly SUCCESSORS others; nobody is everyone's seed.
    as_successor: dict[str, int] = dict.fromkeys(instances, 0)
    for chosen in seeds.values():
        for other in chosen[:SUCCESSORS]:
            as_successor[other] += 1
    assert set(as_successor.values()) == {SUCCESSORS}
    as_seed: dict[str, int] = dict.fromkeys(instances, 0)
    for chosen in seeds.values():
        for other in chosen:
            as_seed[other] += 1
    assert max(as_seed.values()) <= 4 * MAX_SEEDS
    # Seeds alone connect the fleet: gossip from seeds is one component from the start.
    reached, frontier = {"vm0"}, ["vm0"]
    while frontier:
        for other in seeds[frontier.pop()]:
            if other not in reached:
                reached.add(other)
                frontier.append(other)
    assert reached == set(instances)


def test_a_vm_without_a_persona_is_no_seed() -> None:
    net = index(fleet(4), without_persona=frozenset({"vm2"}))
    assert {p.instance for p in net.seeds("vm0")} == {"vm1", "vm3"}
    # It still gets seeds itself, for when it has a persona.
    assert {p.instance for p in net.seeds("vm2")} == {"vm0", "vm1", "vm3"}


def test_a_join_changes_few_vms_seeds() -> None:
    instances = fleet(300)
    before = index(instances)
    joined = fleet(301)
    after = index(joined)
    changed = [i for i in instances if before.seeds(i) != after.seeds(i)]
    assert 0 < len(changed) <= 3 * MAX_SEEDS


def test_seeds_and_summary_stay_on_the_vms_networks() -> None:
    other = {
        f"x{i}": Instance(f"x{i}", f"x{i}", v.addresses, v.interfaces)
        for i, v in enumerate(fleet(5, subnet="10.2").values())
    }
    renamed = {**fleet(5, subnet="10.1"), **other}
    net = index(renamed, {"x1": 7, "vm3": 7})
    assert {p.instance for p in net.seeds("vm0")} == {"vm1", "vm2", "vm3", "vm4"}
    members, truncated = net.summary("vm0", 0)
    assert [p.instance for p in members] == ["vm3"]
    assert not truncated


def test_an_instance_without_interfaces_joins_the_subnet_of_its_address() -> None:
    instances = fleet(3)
    instances["bare"] = Instance("bare", "bare", ("10.1.0.77",))
    instances["elsewhere"] = Instance("elsewhere", "elsewhere", ("192.0.2.1",))
    instances["alone"] = Instance("alone", "alone", ("192.0.2.2",))
    net = index(instances)
    assert {p.instance for p in net.seeds("bare")} == {"vm0", "vm1", "vm2"}
    # Addresses no declared subnet holds: one default network of such instances.
    assert {p.instance for p in net.seeds("elsewhere")} == {"alone"}


def test_the_summary_is_the_higher_priorities_only_and_bounded() -> None:
    instances = fleet(MAX_MEMBERS + 10)
    priorities = {i: 1 + n % 7 for n, i in enumerate(instances)}
    net = index(instances, priorities)
    members, truncated = net.summary("vm0", 5)
    assert {p.priority for p in members} == {6, 7}
    assert not truncated
    members, truncated = net.summary("vm0", 0)
    assert len(members) == MAX_MEMBERS
    assert truncated
    # Highest priority first: what is cut is the lowest.
    assert [p.priority for p in members] == sorted((p.priority for p in members), reverse=True)


def part(net: NetworkIndex, instance_id: str, priority: int) -> object:
    members, truncated = net.summary(instance_id, priority)
    seeds = net.seeds(instance_id)
    return [member_json(p) for p in members], [seed_json(p) for p in seeds], truncated


@pytest.mark.parametrize(
    "change",
    ["priority up", "priority down", "join", "leave", "persona lost", "nothing"],
)
def test_the_diff_says_exactly_which_network_parts_changed(change: str) -> None:
    instances = fleet(300)
    priorities = {i: n % 8 for n, i in enumerate(instances)}
    old = index(instances, priorities)
    after_instances, after_priorities = dict(instances), dict(priorities)
    without: frozenset[str] = frozenset()
    if change == "priority up":
        after_priorities["vm9"] = 7
    elif change == "priority down":
        after_priorities["vm7"] = 0
    elif change == "join":
        after_instances = fleet(301)
        after_priorities["vm300"] = 0  # so that only seeds can change
    elif change == "leave":
        del after_instances["vm16"]  # priority 0
    elif change == "persona lost":
        without = frozenset({"vm21"})
    new = index(after_instances, after_priorities, without)
    changed = {"priority up": ["vm9"], "priority down": ["vm7"], "join": ["vm300"]}.get(
        change, {"leave": ["vm16"], "persona lost": ["vm21"]}.get(change, [])
    )
    diff = NetworkDiff(old, new, changed)
    woken: set[str] = set()
    for vm in instances:
        if vm not in after_instances:
            continue
        before = part(old, vm, priorities[vm])
        after = part(new, vm, after_priorities[vm])
        assert diff.changed(vm, priorities[vm], after_priorities[vm]) == (before != after), vm
        if before != after:
            woken.add(vm)
    # Some part changed for each real change, and never for every VM on a join or leave.
    assert (woken == set()) == (change == "nothing")
    if change in ("join", "leave", "persona lost"):
        assert len(woken) <= 3 * MAX_SEEDS


@pytest.mark.anyio
async def test_the_peers_answer_shows_higher_priority_vms_it_does_not_allow(
    service: Service,
) -> None:
    await service.add_instance("low", "10.0.0.1")
    await service.add_instance("top", "10.0.0.2", {"team": "secret"})
    await service.add_instance("api", "10.0.0.3", {"app": "api"})
    await service.put_persona("low", persona_doc(1, peers=[{"labels": {"app": "api"}}]))
    await service.put_persona("top", persona_doc(7))
    document = persona_doc(4)
    document["network_persona"]["qos_parameters"] = {"dscp": "af41"}
    await service.put_persona("api", document)
    for instance in ("low", "top", "api"):
        await service.pin(instance, instance)
    async with await service.vm("10.0.0.1") as vm:
        answer = (await vm.get("/v1/instance/peers")).json()
    assert [p["instance"] for p in answer["peers"]] == ["api"]
    assert answer["peers"][0]["dscp"] == 34
    # top is not allowed, yet its priority and DSCP are shown; its labels and persona are not.
    assert answer["network"]["members"] == [
        {"instance": "top", "addresses": ["10.0.0.2"], "priority": 7, "dscp": None},
        {"instance": "api", "addresses": ["10.0.0.3"], "priority": 4, "dscp": 34},
    ]
    assert {s["instance"] for s in answer["network"]["seeds"]} == {"top", "api"}
    assert answer["network"]["truncated"] is False
    async with await service.vm("10.0.0.2") as vm:
        answer = (await vm.get("/v1/instance/peers")).json()
    assert answer["network"]["members"] == []
