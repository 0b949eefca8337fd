"""The agent's whole peer path for one peer joining an N-peer allowlist; prints one JSON document.

The agent's own functions, in the order the agent calls them, into a throwaway namespace
(the persona and peers of ``run.py``: a restricted persona whose ``peers`` select N VMs):

The VM that joins has a new address and an instance id in the middle of the others'.

* ``certificate``: a certificate for a new VM arrives over the control channel. The gossip
  news wakes the agent, which merges its view and compares it with the one it compiled
  (``wake_s``); the pass merges it again and compiles it incrementally, computes the plan's
  digest and updates the sets in place with the compiler's delta (``pass_s``). ``total_s``
  is both.
* ``http``: the service's peers answer lists one more VM. The answer is decoded
  (``decode_s``: ``decode_json`` of the bytes, as the client does) and checked by its parser
  (``check_s``, as the watcher does; its ETag is new, so the bodies are not compared), and the
  pass merges, compiles and updates (``pass_s``). ``total_s`` is all three.

Each path is measured twice in the same run: ``after`` with the agent's parser and merger
that keep their last answer and view (``PeersAnswerParser``, ``PeerViewMerger``), ``before``
with the from-scratch functions (``parse_peers_answer``, ``merge_peer_views``: every peer a
new object at every merge, so the compiler compares every entry). ``pass_merge_s`` and
``pass_compile_s`` split a pass: the view made, and the plan compiled with its digest (the
rest of ``pass_s`` is the update). Figures are means of
``--repeat`` joins (each followed by the leave, untimed, that restores the view).

    .venv/bin/python bench/apply/agent_path.py                     # 100k peers
    .venv/bin/python bench/apply/agent_path.py --sizes 1000 10000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from run import PERSONA, _peers, _with_peers

from netpersona.agent.answers import PeersAnswerParser, decode_json, parse_peers_answer
from netpersona.agent.view import PeerViewMerger, compose_facts, merge_peer_views
from netpersona.certs.certificate import PersonaCertificate
from netpersona.compiler.incremental import PlanCompiler
from netpersona.dataplane import Applier, LinuxKernel, StateStore
from netpersona.facts import HostFacts
from netpersona.records import Peer
from netpersona.testing.certs import make_certificate
from netpersona.testing.topology import lab

SERVED_AT = 1000.0
WHERE = "GET /v1/instance/peers"

SPLIT = ("pass_merge", "pass_compile")

Parse = Callable[[Any], Any]
Merge = Callable[..., tuple[Peer, ...]]


class Agent:
    """The agent's peer path with one parser and one merger (kept or from scratch), one
    incremental compiler and one applier, as ``runner.Agent`` and ``Reconciler`` hold them."""

    def __init__(self, parse: Parse, merge: Merge, base: HostFacts, applier: Applier) -> None:
        self.parse, self.merge, self.base, self.applier = parse, merge, base, applier
        self.compiler = PlanCompiler()
        self.body: Any = None
        self.learned: list[PersonaCertificate] = []
        self.compiled_view: tuple[Peer, ...] | None = None
        self.applied_digest: str | None = None
        self.split = (0.0, 0.0)  # the last pass's merge and compile (with the digest)

    def peer_view(self) -> tuple[Peer, ...]:
        served, network = self.parse(self.body)
        members = () if network is None else network.members
        return self.merge(served, SERVED_AT, self.learned, members)

    def take(self, raw: bytes) -> None:
        """The watcher: decode, check, compare with the last answer."""
        body = decode_json(raw, WHERE)
        self.parse(body)
        changed = self.body is None or body != self.body
        assert changed
        self.body = body

    def wake(self) -> None:
        """The control channel's news: is the view to compile with another one?"""
        assert self.peer_view() != self.compiled_view

    def run_pass(self) -> None:
        started = time.perf_counter()
        view = self.peer_view()
        self.compiled_view = view
        merged = time.perf_counter()
        compiled = self.compiler.compile(PERSONA, compose_facts(self.base, view))
        digest = compiled.plan.digest
        self.split = (merged - started, time.perf_counter() - merged)
        state = self.applier.store.load()
        if state is None:
            self.applier.apply(compiled.plan, "bench")
        else:
            assert digest != self.applied_digest
            assert state.plan.ruleset_digest == compiled.plan.ruleset_digest
            self.applier.update_peers(compiled.plan.peer_sets, compiled.peer_change)
        self.applied_digest = digest


def _answer(peers: tuple[Peer, ...]) -> bytes:
    return json.dumps({"peers": [p.to_json() for p in peers]}).encode()


def _mean(values: list[float]) -> float:
    return round(statistics.mean(values), 4)


def _joining(size: int, round_: int) -> Peer:
    """The VM that joins in round ``round_``: a new address, an instance id in the middle."""
    (peer,) = _peers(1, start=size + round_)
    return replace(peer, instance=f"vm-{size // 2:07d}-{round_}")


def _certificate(size: int, round_: int) -> PersonaCertificate:
    peer = _joining(size, round_)
    return make_certificate(
        peer.instance, peer.addresses, persona="api", priority=1, issued_at=int(SERVED_AT) + 1
    )


def bench_paths(size: int, repeat: int) -> dict[str, Any]:
    served = _peers(size)
    raw = _answer(served)
    joined_raw = [
        # The service lists its peers in instance-id order: the new one is in the middle.
        _answer(tuple(sorted((*served, _joining(size, r)), key=lambda p: p.instance)))
        for r in range(repeat)
    ]
    result: dict[str, Any] = {"peers": size, "answer_bytes": len(raw)}
    with lab("npbench") as net, tempfile.TemporaryDirectory() as state:
        base = _with_peers(net.facts(), ())
        applier = Applier(LinuxKernel(net.vm.name), StateStore(Path(state)))
        kinds: dict[str, tuple[Parse, Merge]] = {
            "after": (PeersAnswerParser(), PeerViewMerger()),
            "before": (parse_peers_answer, merge_peer_views),
        }
        for kind, (parse, merge) in kinds.items():
            agent = Agent(parse, merge, base, applier)
            agent.take(raw)
            started = time.perf_counter()
            agent.run_pass()  # the first pass: the whole plan (a fresh apply, or 0 peers changed)
            first_s = time.perf_counter() - started
            cert: dict[str, list[float]] = {k: [] for k in ("wake", "pass", "total", *SPLIT)}
            http: dict[str, list[float]] = {
                k: [] for k in ("decode", "check", "pass", "total", *SPLIT)
            }
            for round_ in range(repeat):
                agent.learned = [_certificate(size, round_)]
                t0 = time.perf_counter()
                agent.wake()
                t1 = time.perf_counter()
                agent.run_pass()
                t2 = time.perf_counter()
                cert["wake"].append(t1 - t0)
                cert["pass"].append(t2 - t1)
                cert["pass_merge"].append(agent.split[0])
                cert["pass_compile"].append(agent.split[1])
                cert["total"].append(t2 - t0)
                agent.learned = []  # it leaves again (untimed)
                agent.run_pass()
            for round_ in range(repeat):
                t0 = time.perf_counter()
                body = decode_json(joined_raw[round_], WHERE)
                t1 = time.perf_counter()
                agent.parse(body)  # (the watcher compares bodies only under the same ETag)
                t2 = time.perf_counter()
                assert body != agent.body
                agent.body = body
                agent.run_pass()
                t3 = time.perf_counter()
                http["decode"].append(t1 - t0)
                http["check"].append(t2 - t1)
                http["pass"].append(t3 - t2)
                http["pass_merge"].append(agent.split[0])
                http["pass_compile"].append(agent.split[1])
                http["total"].append(t3 - t0)
                agent.take(raw)  # it leaves again (untimed)
                agent.run_pass()
            result[kind] = {
                "first_pass_s": round(first_s, 4),
                "certificate": {f"{k}_s": _mean(v) for k, v in cert.items()},
                "http": {f"{k}_s": _mean(v) for k, v in http.items()},
            }
        applier.remove()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--repeat", type=int, default=3, help="joins per figure")
    args = parser.parse_args()
    load_before = os.getloadavg()
    result = {
        "machine": {
            "python": platform.python_version(),
            "kernel": platform.release(),
            "cpus": len(os.sched_getaffinity(0)),
        },
        "paths": [bench_paths(size, args.repeat) for size in args.sizes],
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
