"""Applier benchmark; prints one JSON document.

For each peer-set size N (a restricted, high-profile persona whose ``peers`` select N VMs):

* ``compile_s``: compile_plan (persona + facts with N peers), in this process;
* ``apply_s``: the first full apply into a fresh namespace (snapshot, every step, readback);
* ``reapply_unchanged_s``: the same plan again (readback only: nothing changes);
* ``peer_join_s`` / ``peer_leave_s``: one peer joins / leaves: an in-place set update with
  its readback and state write (mean of ``--repeat`` rounds), the sets as the agent's
  compiler makes them (the unchanged elements the objects the applied sets hold), the delta
  found by comparing them; ``peer_join_resolved_s``: the same with sets resolved from scratch
  (every element a new string, so the comparison reads them all);
* ``raw_nft_add_s``: the reference in the same namespace: one bare ``nft add element`` of one
  address into the same set, as a shell would run it (mean of ``--repeat`` rounds);
* ``agent_join_s`` / ``agent_leave_s``: the agent's whole path for one join (leave): the peer
  view (in instance-id order, as the agent keeps it) with one more peer (one less) compiled
  by the incremental compiler (the last plan with the changed peers' elements), the plan's
  digest computed and compared with the applied state's (which the agent keeps), and the
  in-place update with the compiler's delta (mean of ``--repeat`` rounds);
  ``agent_join_compile_s`` (compile and digest) and ``agent_join_update_s`` split the join;
* ``agent_join_scratch_s``: the same join with the plan compiled from scratch
  (``compile_plan`` on the whole view: every peer resolved, the delta found by comparing the
  sets), for comparison.

Then, side by side in the same run, the per-packet cost of the allowlist as one set lookup
(``ip saddr @allow accept``, what the compiler emits) against the same allowlist written as
linear rules (one ``ip saddr X accept`` per address, the sender's address last: the
iptables-style worst case). A UDP flood (iperf3, 16-byte payloads, as fast as it goes) crosses
a veth pair into a namespace whose input hook holds the rules and then drops what they allowed;
veth runs the receive path in the sender's softirq, so ``pps`` (what the sender got out)
falls as the hook gets dearer, and ``ns_per_packet`` is ``1/pps - 1/pps_without_allowlist``.

    .venv/bin/python bench/apply/run.py                         # 10, 1k, 10k, 100k
    .venv/bin/python bench/apply/run.py --sizes 10 1000 --linear-max 1000 --seconds 1
    .venv/bin/python bench/apply/run.py --sizes 1000 100000 --no-lookup
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from netpersona.compiler import Plan, compile_plan, resolve_peer_sets
from netpersona.compiler.incremental import PlanCompiler
from netpersona.dataplane import Applier, LinuxKernel, StateStore
from netpersona.dataplane.nftlib import nft_runner
from netpersona.facts import HostFacts
from netpersona.model import parse_persona_text
from netpersona.records import Peer
from netpersona.testing.netns import Netns, netns_group
from netpersona.testing.topology import lab

PERSONA = parse_persona_text(
    """
network_persona:
  communication_mode: restricted
  security_profile: high
  allowed_protocols: [postgres, icmp]
  priority: 2
  peers: [{persona: api}]
"""
)
FIRST_PEER = int(IPv4Address("10.128.0.1"))


def _peers(count: int, start: int = 0) -> tuple[Peer, ...]:
    return tuple(
        Peer(f"vm-{i:07d}", (IPv4Address(FIRST_PEER + i),), persona="api", priority=1)
        for i in range(start, start + count)
    )


def _with_peers(facts: HostFacts, peers: tuple[Peer, ...]) -> HostFacts:
    return HostFacts(facts.uplinks, facts.metadata, facts.control_port, peers)


def _mean(values: list[float]) -> float:
    return round(statistics.mean(values), 4)


def bench_apply(size: int, repeat: int) -> dict[str, Any]:
    with lab("npbench") as net, tempfile.TemporaryDirectory() as state:
        base = net.facts()
        facts = _with_peers(base, _peers(size))
        started = time.perf_counter()
        compile_plan(PERSONA, facts)
        compile_s = time.perf_counter() - started
        # The plan applied is the incremental compiler's, as in the agent (its peer sets are
        # the objects the next peer change starts from).
        compiler = PlanCompiler()
        plan = compiler.compile(PERSONA, facts).plan
        applier = Applier(LinuxKernel(net.vm.name), StateStore(Path(state)))
        apply_s = applier.apply(plan, "bench").seconds
        started = time.perf_counter()
        applier.apply(plan, "bench")
        unchanged_s = time.perf_counter() - started
        joins, leaves, resolved = [], [], []
        for round_ in range(repeat):
            # The sets as the agent's compiler gives them: the unchanged elements are the
            # objects the applied sets hold. The delta is found by comparing the sets.
            view = facts.peers
            joined_view = tuple(sorted((*view, *_peers(1, start=size + round_)), key=_instance))
            joined = compiler.compile(PERSONA, _with_peers(base, joined_view)).plan.peer_sets
            started = time.perf_counter()
            applier.update_peers(joined)
            joins.append(time.perf_counter() - started)
            left = compiler.compile(PERSONA, _with_peers(base, view)).plan.peer_sets
            started = time.perf_counter()
            applier.update_peers(left)
            leaves.append(time.perf_counter() - started)
        for round_ in range(repeat):
            # The sets resolved from scratch: every element a new string to compare.
            extra = _peers(1, start=size + round_)
            fresh = resolve_peer_sets(PERSONA, _with_peers(base, facts.peers + extra))
            started = time.perf_counter()
            applier.update_peers(fresh)
            resolved.append(time.perf_counter() - started)
            applier.update_peers(plan.peer_sets)
        raw = []
        for round_ in range(repeat):
            address = str(IPv4Address(FIRST_PEER + size + 100 + round_))
            add = [
                "nft",
                "add",
                "element",
                "inet",
                "netpersona",
                "peer_addrs_v4",
                f"{{ {address} }}",
            ]
            started = time.perf_counter()
            net.vm.run(add)
            raw.append(time.perf_counter() - started)
            net.vm.run(["nft", "delete", *add[2:]])
        # The agent's whole path for one join and one leave: the view with one more peer (or
        # one less) compiled (incrementally), its digest compared with the applied state's,
        # and the in-place update with the compiler's delta.
        agent: dict[str, list[float]] = {"join": [], "leave": [], "compile": [], "update": []}
        agent_scratch = []
        _remember(applier, plan.digest)
        for round_ in range(repeat):
            view = facts.peers
            joined_view = tuple(sorted((*view, *_peers(1, start=size + round_)), key=_instance))
            for kind, peers in (("join", joined_view), ("leave", view)):
                started = time.perf_counter()
                compiled = compiler.compile(PERSONA, _with_peers(base, peers))
                digest = compiled.plan.digest
                compiled_at = time.perf_counter()
                applied = applier.store.load()
                assert applied is not None
                assert compiled.peer_change is not None
                assert digest != applied_digest(applied.plan)
                assert applied.plan.ruleset_digest == compiled.plan.ruleset_digest
                applier.update_peers(compiled.plan.peer_sets, compiled.peer_change)
                done = time.perf_counter()
                agent[kind].append(done - started)
                if kind == "join":
                    agent["compile"].append(compiled_at - started)
                    agent["update"].append(done - compiled_at)
                _remember(applier, digest)
        for round_ in range(repeat):
            # The same join compiled from scratch (what the agent did before the compiler
            # kept its last plan), for comparison.
            extra = _peers(1, start=size + round_)
            started = time.perf_counter()
            joined_plan = compile_plan(PERSONA, _with_peers(base, facts.peers + extra))
            applied = applier.store.load()
            assert applied is not None
            assert applied_digest(applied.plan) != joined_plan.digest
            assert applied.plan.ruleset_digest == joined_plan.ruleset_digest
            applier.update_peers(joined_plan.peer_sets)
            agent_scratch.append(time.perf_counter() - started)
            applier.update_peers(plan.peer_sets)
        applier.remove()
    return {
        "peers": size,
        "compile_s": round(compile_s, 4),
        "apply_s": round(apply_s, 4),
        "reapply_unchanged_s": round(unchanged_s, 4),
        "peer_join_s": _mean(joins),
        "peer_leave_s": _mean(leaves),
        "peer_join_resolved_s": _mean(resolved),
        "raw_nft_add_s": _mean(raw),
        "agent_join_s": _mean(agent["join"]),
        "agent_leave_s": _mean(agent["leave"]),
        "agent_join_compile_s": _mean(agent["compile"]),
        "agent_join_update_s": _mean(agent["update"]),
        "agent_join_scratch_s": _mean(agent_scratch),
    }


# The agent keeps the digest of the state it last applied (reconcile.py); so does the bench.
_DIGESTS: dict[int, tuple[Plan, str]] = {}


def applied_digest(plan: Plan) -> str:
    known = _DIGESTS.get(id(plan))
    if known is not None and known[0] is plan:
        return known[1]
    digest = plan.digest
    _DIGESTS[id(plan)] = (plan, digest)
    return digest


def _remember(applier: Applier, digest: str) -> None:
    state = applier.store.load()
    assert state is not None
    _DIGESTS[id(state.plan)] = (state.plan, digest)


def _instance(peer: Peer) -> str:
    return peer.instance


SENDER, RECEIVER = "10.99.0.2", "10.99.0.1"


def _allowlist(size: int) -> list[str]:
    # size - 1 other addresses, then the sender: a linear chain walks all of them.
    return [str(IPv4Address(FIRST_PEER + i)) for i in range(size - 1)] + [SENDER]


def _load_rules(receiver: Netns, kind: str, size: int) -> None:
    """The allowlist in the receiver's input hook; allowed packets are then counted and dropped
    (in chain ``done``), so no socket receive, only the hook, adds to each packet's cost."""
    addresses = _allowlist(size)
    lines = ["table inet bench {", "  counter allowed {}"]
    if kind == "set":
        lines += ["  set allow { type ipv4_addr; elements = { " + ", ".join(addresses) + " } }"]
    lines += ["  chain done {", '    counter name "allowed" drop', "  }", "  chain allow {"]
    if kind == "set":
        lines += ["    ip saddr @allow goto done"]
    elif kind == "linear":
        lines += [f"    ip saddr {address} goto done" for address in addresses]
    else:
        lines += ["    goto done"]
    lines += ["    drop", "  }"]
    lines += [
        "  chain input { type filter hook input priority 0; policy accept;",
        # Only the flood (16-byte payloads): iperf3's 4-byte UDP handshake must get through.
        "    udp dport 5201 udp length 24 jump allow",
        "  }",
        "}",
    ]
    receiver.run(["nft", "-f", "-"], input="\n".join(lines) + "\n", timeout=600)


def _flood(sender: Netns, receiver: Netns, seconds: float, rounds: int) -> float:
    """Packets per second the sender got through: veth hands each packet to the receiving
    namespace's input hook in the sender's own softirq, so the hook's cost slows the sender.
    The best of ``rounds`` floods: other load on the machine only ever slows a flood down."""
    return max(_one_flood(sender, receiver, seconds) for _ in range(rounds))


def _one_flood(sender: Netns, receiver: Netns, seconds: float) -> float:
    done = sender.run(
        ["iperf3", "-c", RECEIVER, "-u", "-b", "0", "-l", "16", "-t", str(seconds), "-J"],
        timeout=seconds + 30,
    )
    total = json.loads(done.stdout)["end"]["sum"]
    out = receiver.run(["nft", "list", "counter", "inet", "bench", "allowed"]).stdout
    allowed = int(out.split("packets")[1].split()[0])
    if allowed < 0.9 * total["packets"]:
        raise SystemExit(f"the allowlist let {allowed} of {total['packets']} packets through")
    return float(total["packets"]) / float(total["seconds"])


def bench_lookup(sizes: list[int], linear_max: int, seconds: float, rounds: int) -> dict[str, Any]:
    with netns_group(2, "npbench") as (sender, receiver):
        sender.run(["ip", "link", "add", "name", "s0", "type", "veth", "peer", "name", "r0"])
        sender.run(["ip", "link", "set", "r0", "netns", receiver.name])
        sender.run(["ip", "address", "add", f"{SENDER}/24", "dev", "s0"])
        sender.run(["ip", "link", "set", "s0", "up"])
        receiver.run(["ip", "address", "add", f"{RECEIVER}/24", "dev", "r0"])
        receiver.run(["ip", "link", "set", "r0", "up"])
        server = receiver.popen(
            ["iperf3", "-s", "-p", "5201"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            for _ in range(100):
                if receiver.run(["ss", "-Hltn", "sport = :5201"]).stdout.strip():
                    break
                time.sleep(0.05)
            _load_rules(receiver, "none", 0)
            baseline = _flood(sender, receiver, seconds, rounds)
            receiver.run(["nft", "delete", "table", "inet", "bench"])
            rows = []
            for size in sizes:
                row: dict[str, Any] = {"addresses": size}
                for kind in ("set", "linear"):
                    if kind == "linear" and size > linear_max:
                        row[kind] = None
                        continue
                    started = time.perf_counter()
                    _load_rules(receiver, kind, size)
                    load_s = time.perf_counter() - started
                    pps = _flood(sender, receiver, seconds, rounds)
                    receiver.run(["nft", "delete", "table", "inet", "bench"])
                    row[kind] = {
                        "load_s": round(load_s, 3),
                        "pps": round(pps),
                        "ns_per_packet": round((1 / pps - 1 / baseline) * 1e9, 1),
                    }
                rows.append(row)
        finally:
            server.kill()
            server.wait(timeout=10)
    return {
        "pps_without_allowlist": round(baseline),
        "seconds_per_flood": seconds,
        "rounds": rounds,
        "sizes": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=5, help="peer join/leave rounds")
    parser.add_argument("--linear-max", type=int, default=10_000, help="largest linear chain")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each flood")
    parser.add_argument("--rounds", type=int, default=3, help="floods per figure (best kept)")
    parser.add_argument("--no-lookup", action="store_true", help="skip the per-packet floods")
    args = parser.parse_args()
    load_before = os.getloadavg()
    result = {
        "machine": {
            "python": platform.python_version(),
            "kernel": platform.release(),
            "cpus": len(os.sched_getaffinity(0)),
            "nft": type(nft_runner()).__name__,
        },
        "apply": [bench_apply(size, args.repeat) for size in args.sizes],
    }
    if not args.no_lookup:
        result["lookup"] = bench_lookup(args.sizes, args.linear_max, args.seconds, args.rounds)
    result["loadavg_before"] = load_before
    result["loadavg_after"] = os.getloadavg()
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
