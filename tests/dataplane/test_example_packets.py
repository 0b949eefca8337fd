"""Every example persona, applied to a real kernel and checked with real packets.

For each example (every mode x profile the examples cover), a probe suite of TCP, UDP and
ICMP both ways, subnet broadcast, and multicast to a listed and an unlisted group must give
exactly the outcome :mod:`tests.dataplane.oracle` reads from spec sections 3-5, and the
packets the VM sends must carry the DSCP of section 6, counted by nftables on the receivers.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netpersona.compiler import compile_plan
from netpersona.dataplane import Applier, LinuxKernel, StateStore
from netpersona.model import Persona, parse_persona_text
from netpersona.model.dscp import dscp_name
from netpersona.model.protocols import L4
from netpersona.probe.runner import Listener, listening, send_probes
from netpersona.testing.netns import Netns
from netpersona.testing.topology import Lab, lab
from tests.dataplane.oracle import Oracle, lab_persona, peer_facts

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
CLOSED = 9  # discard: no example allows it
OTHER_GROUP = "239.9.9.9"
TIMEOUT = 0.6
METADATA_PORT = 8080
CONTROL_PORT = 7480


@pytest.fixture(scope="module")
def net() -> Iterator[Lab]:
    with lab() as built:
        yield built


def _port(persona: Persona, l4: L4) -> int:
    rule = next((r for r in persona.rules if r.l4 is l4 and r.ports is not None), None)
    return rule.ports.first if rule and rule.ports else CLOSED


def _dscp_counters(ns: Netns, source: str, destination: str, dscp: int) -> None:
    name = dscp_name(dscp)
    match = f"ip saddr {source} ip daddr {destination}"
    ns.run(
        ["nft", "-f", "-"],
        input=(
            "table inet probe\ndelete table inet probe\n"
            "table inet probe {\n"
            "  counter want {}\n  counter other {}\n"
            "  chain in { type filter hook input priority -300; policy accept;\n"
            f"    {match} ip dscp {name} counter name want\n"
            f"    {match} ip dscp != {name} counter name other\n  }}\n}}\n"
        ),
    )


def _counter(ns: Netns, name: str) -> int:
    out = ns.run(["nft", "list", "counter", "inet", "probe", name]).stdout
    return int(out.split("packets")[1].split()[0])


def _send_all(jobs: dict[str, tuple[Netns, list[dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    errors: list[BaseException] = []

    def one(ns: Netns, probes: list[dict[str, Any]]) -> None:
        try:
            results.update(send_probes(ns, probes))
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=job) for job in jobs.values() if job[1]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_persona_gives_the_spec_outcomes(net: Lab, tmp_path: Path, example: Path) -> None:
    persona = lab_persona(parse_persona_text(example.read_text()), net.peer4, net.peer6)
    oracle = Oracle(persona)
    # The metadata service sits on the stranger: never a peer, yet always reachable (section 3).
    facts = net.facts(
        peers=peer_facts(persona, net.peer4, net.peer6),
        metadata=f"{net.stranger4}:{METADATA_PORT}",
        control_port=CONTROL_PORT,
    )
    applier = Applier(LinuxKernel(net.vm.name), StateStore(tmp_path / "state"))
    applier.apply(compile_plan(persona, facts), example.stem)
    tport, uport = _port(persona, L4.TCP), _port(persona, L4.UDP)
    group = next((str(g) for g in persona.multicast_groups if g.version == 4), "239.1.1.1")
    hosts = {"peer": (net.peer, net.peer4), "stranger": (net.stranger, net.stranger4)}
    for name, (ns, address) in hosts.items():
        _dscp_counters(ns, net.vm4, address, oracle.dscp_to(name))

    expected: dict[str, bool] = {}
    jobs: dict[str, tuple[Netns, list[dict[str, Any]]]] = {"vm": (net.vm, [])}

    def probe(sender: str, probe_id: str, outcome: bool, **fields: Any) -> None:
        expected[probe_id] = outcome
        jobs.setdefault(sender, (hosts[sender][0] if sender in hosts else net.vm, []))
        jobs[sender][1].append({"id": probe_id, "timeout": TIMEOUT, **fields})

    for host, (_ns, address) in hosts.items():
        for port in sorted({tport, CLOSED}):
            probe(host, f"{host}>vm tcp/{port}", oracle.inbound(L4.TCP, port, host),
                  proto="tcp", dst=net.vm4, port=port)  # fmt: skip
            probe(host, f"{host}>vm tcp6/{port}", oracle.inbound(L4.TCP, port, host),
                  proto="tcp", dst=net.vm6, port=port)  # fmt: skip
            probe("vm", f"vm>{host} tcp/{port}", oracle.outbound(L4.TCP, port, host),
                  proto="tcp", dst=address, port=port)  # fmt: skip
        for port in {uport, CLOSED}:
            probe(host, f"{host}>vm udp/{port}", oracle.inbound(L4.UDP, port, host),
                  proto="udp", dst=net.vm4, port=port)  # fmt: skip
            probe("vm", f"vm>{host} udp/{port}", oracle.outbound(L4.UDP, port, host),
                  proto="udp", dst=address, port=port)  # fmt: skip
        probe(host, f"{host}>vm icmp", oracle.inbound(L4.ICMP, None, host),
              proto="icmp", dst=net.vm4)  # fmt: skip
        probe(host, f"{host}>vm icmp6", oracle.inbound(L4.ICMP, None, host),
              proto="icmp", dst=net.vm6)  # fmt: skip
        probe("vm", f"vm>{host} icmp", oracle.outbound(L4.ICMP, None, host),
              proto="icmp", dst=address)  # fmt: skip
        probe(host, f"{host}>vm broadcast", oracle.broadcast_in(uport, host),
              proto="udp", dst=net.broadcast4, port=uport, broadcast=True)  # fmt: skip
        probe(host, f"{host}>vm mcast listed", oracle.multicast_in(group, uport, host),
              proto="udp", dst=group, port=uport, ifname="eth0")  # fmt: skip
        probe(host, f"{host}>vm mcast other", oracle.multicast_in(OTHER_GROUP, uport, host),
              proto="udp", dst=OTHER_GROUP, port=uport, ifname="eth0")  # fmt: skip
    probe("vm", "vm>stranger metadata", True, proto="tcp", dst=net.stranger4, port=METADATA_PORT)
    probe("vm", "vm>stranger control", True, proto="udp", dst=net.stranger4, port=CONTROL_PORT)
    probe("stranger", "stranger>vm control", True, proto="udp", dst=net.vm4, port=CONTROL_PORT)
    probe("vm", "vm>peer broadcast", oracle.broadcast_out(uport),
          proto="udp", dst=net.broadcast4, port=uport, broadcast=True)  # fmt: skip
    probe("vm", "vm>peer mcast listed", oracle.multicast_out(group, uport),
          proto="udp", dst=group, port=uport, ifname="eth0")  # fmt: skip
    probe("vm", "vm>peer mcast other", oracle.multicast_out(OTHER_GROUP, uport),
          proto="udp", dst=OTHER_GROUP, port=uport, ifname="eth0")  # fmt: skip

    with contextlib.ExitStack() as stack:
        listeners: dict[str, Listener] = {
            name: stack.enter_context(
                listening(
                    ns,
                    tcp=sorted({tport, CLOSED, METADATA_PORT}),
                    udp=sorted({uport, CLOSED, CONTROL_PORT}),
                    groups=[f"{group}:{uport}", f"{OTHER_GROUP}:{uport}"],
                    ifname="eth0",
                )
            )
            for name, ns in (("vm", net.vm), ("peer", net.peer), ("stranger", net.stranger))
        }
        results = _send_all(jobs)
        arrived = {name: listener.tokens() for name, listener in listeners.items()}

    seen: dict[str, bool] = {}
    for probe_id in expected:
        sender, rest = probe_id.split(">", 1)
        receiver = rest.split()[0]
        result = results[probe_id]
        if "tcp" in probe_id or "icmp" in probe_id:
            seen[probe_id] = bool(result["ok"])
        else:
            seen[probe_id] = probe_id in arrived[receiver] and bool(result["ok"])
        del sender
    wrong = {pid: f"expected {expected[pid]}, saw {seen[pid]}" for pid in expected
             if expected[pid] != seen[pid]}  # fmt: skip
    assert not wrong, f"{example.stem}: {wrong}"

    # Section 6: what the VM sent to each host carried that host's expected DSCP.
    for name, (ns, _address) in hosts.items():
        delivered = any(seen[pid] for pid in expected if pid.startswith(f"vm>{name} "))
        assert _counter(ns, "other") == 0, f"{example.stem}: wrong DSCP toward {name}"
        assert (_counter(ns, "want") > 0) == delivered
    applier.remove()
