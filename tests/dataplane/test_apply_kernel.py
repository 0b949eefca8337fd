"""The applier against a real kernel, in throwaway namespaces: apply, readback, remove."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from netpersona.compiler import compile_plan
from netpersona.dataplane import Applier, LinuxKernel, StateStore, read_snapshot
from netpersona.dataplane.drift import detect_drift
from netpersona.errors import Conflict
from netpersona.testing.netns import Netns
from netpersona.testing.topology import Lab, lab
from tests.dataplane.personas import PERSONA_A, PERSONA_B, persona

pytestmark = pytest.mark.kernel


@pytest.fixture
def net() -> Iterator[Lab]:
    with lab() as built:
        yield built


def _applier(net: Lab, tmp_path: Path) -> Applier:
    return Applier(LinuxKernel(net.vm.name), StateStore(tmp_path / "state"))


def _sysctl(ns: Netns, key: str) -> str:
    return ns.run(["sysctl", "-n", key]).stdout.strip()


def _mtu(ns: Netns, dev: str) -> str:
    return ns.run(["cat", f"/sys/class/net/{dev}/mtu"]).stdout.strip()


def test_apply_reads_back_and_remove_restores_everything(net: Lab, tmp_path: Path) -> None:
    applier = _applier(net, tmp_path)
    plan = compile_plan(persona(PERSONA_B), net.facts(two_uplinks=True))
    scope = ([s.key for s in plan.sysctls], ["eth0", "eth1"])
    pristine = read_snapshot(applier.kernel, *scope)

    report = applier.apply(plan, "b")

    assert report.steps
    assert not report.unchanged
    assert applier.check(plan) == []
    assert _mtu(net.vm, "eth0") == "1400"
    assert _sysctl(net.vm, "net.ipv4.conf.eth0.rp_filter") == "2"  # strict is in nftables
    assert "htb 6e70:" in net.vm.run(["tc", "qdisc", "show", "dev", "eth0"]).stdout
    assert "lookup 7480" in net.vm.run(["ip", "rule", "show"]).stdout
    state = applier.store.load()
    assert state is not None
    assert state.persona == "b"
    assert state.plan == plan
    assert detect_drift(applier.kernel, state, applier.store.load_originals()) == []

    again = applier.apply(plan, "b")
    assert again.unchanged

    removed = applier.remove()
    assert removed.steps
    assert pristine.differences(read_snapshot(applier.kernel, *scope)) == []
    assert _mtu(net.vm, "eth0") == "1500"
    assert net.vm.run(["nft", "list", "tables"]).stdout.strip() == ""
    assert applier.store.load() is None


def test_switching_personas_restores_what_the_new_one_leaves_alone(
    net: Lab, tmp_path: Path
) -> None:
    applier = _applier(net, tmp_path)
    facts = net.facts(two_uplinks=True)
    applier.apply(compile_plan(persona(PERSONA_B), facts), "b")
    assert _sysctl(net.vm, "net.ipv4.conf.all.send_redirects") == "0"

    applier.apply(compile_plan(persona(PERSONA_A), facts), "a")

    # A (priority 2) steers to the standard uplink; B's multicast route and rule are gone.
    routes = net.vm.run(["ip", "route", "show", "table", "7480"]).stdout
    assert routes == "default via 10.78.0.2 dev eth1 src 10.78.0.1 \n"
    assert "224.0.0.0/4" not in net.vm.run(["ip", "rule", "show"]).stdout
    assert _mtu(net.vm, "eth0") == "1450"
    applier.remove()
    assert _sysctl(net.vm, "net.ipv4.conf.all.send_redirects") == "1"
    assert _sysctl(net.vm, "net.ipv4.conf.eth0.rp_filter") == "0"


def _foreign_state(ns: Netns) -> None:
    ns.run(
        ["nft", "-f", "-"],
        input=(
            "table inet othertool {\n"
            "  set blocked { type ipv4_addr; elements = { 192.0.2.7 } }\n"
            "  chain in { type filter hook input priority 10; policy accept;\n"
            "    ip saddr @blocked drop\n    tcp dport 9999 drop\n  }\n}\n"
        ),
    )
    ns.run(["ip", "link", "add", "name", "aux0", "type", "veth", "peer", "name", "aux1"])
    ns.run(["ip", "link", "set", "aux0", "up"])
    ns.run(["tc", "qdisc", "add", "dev", "aux0", "root", "handle", "1:", "tbf", "rate", "1mbit",
            "burst", "32kb", "latency", "50ms"])  # fmt: skip
    ns.run(["tc", "qdisc", "add", "dev", "eth0", "ingress"])
    ns.run(["ip", "route", "add", "192.0.2.0/24", "via", "10.77.0.2", "dev", "eth0"])
    ns.run(["ip", "route", "add", "198.51.100.0/24", "dev", "eth1", "table", "100"])
    ns.run(["ip", "rule", "add", "pref", "1000", "to", "198.51.100.0/24", "lookup", "100"])


def _foreign_view(ns: Netns) -> dict[str, str]:
    rules = ns.run(["ip", "rule", "show"]).stdout.splitlines()
    return {
        "nft": ns.run(["nft", "list", "table", "inet", "othertool"]).stdout,
        "tbf": ns.run(["tc", "qdisc", "show", "dev", "aux0"]).stdout,
        "ingress": ns.run(["tc", "qdisc", "show", "dev", "eth0", "ingress"]).stdout,
        "main": ns.run(["ip", "route", "show", "table", "main"]).stdout,
        "table100": ns.run(["ip", "route", "show", "table", "100"]).stdout,
        "rules": "\n".join(r for r in rules if not r.startswith("748")),
    }


def test_another_tools_state_is_byte_identical_after_apply_and_remove(
    net: Lab, tmp_path: Path
) -> None:
    _foreign_state(net.vm)
    before = _foreign_view(net.vm)
    assert "9999" in before["nft"]
    assert "tbf" in before["tbf"]
    assert "ingress" in before["ingress"]
    assert "198.51.100.0/24" in before["rules"]
    applier = _applier(net, tmp_path)
    facts = net.facts(two_uplinks=True)

    applier.apply(compile_plan(persona(PERSONA_B), facts), "b")
    assert _foreign_view(net.vm) == before
    applier.apply(compile_plan(persona(PERSONA_A), facts), "a")
    assert _foreign_view(net.vm) == before
    applier.remove()
    assert _foreign_view(net.vm) == before


def test_a_foreign_root_qdisc_is_left_alone_and_the_apply_refused(net: Lab, tmp_path: Path) -> None:
    net.vm.run(["tc", "qdisc", "add", "dev", "eth0", "root", "handle", "1:", "tbf",
                "rate", "5mbit", "burst", "32kb", "latency", "50ms"])  # fmt: skip
    before = net.vm.run(["tc", "qdisc", "show", "dev", "eth0"]).stdout
    applier = _applier(net, tmp_path)
    shaped = persona(PERSONA_B)  # egress_rate: the plan wants HTB on eth0

    with pytest.raises(Conflict, match="eth0 has a root qdisc tbf 1:"):
        applier.apply(compile_plan(shaped, net.facts()), "b")

    assert net.vm.run(["tc", "qdisc", "show", "dev", "eth0"]).stdout == before
    assert net.vm.run(["nft", "list", "tables"]).stdout == ""
    assert applier.store.load() is None
