"""Peer changes update the nftables sets in place: no reload, established flows kept."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netpersona.compiler import compile_plan, resolve_peer_sets
from netpersona.dataplane import Applier, LinuxKernel, StateStore
from netpersona.dataplane.drift import detect_drift
from netpersona.errors import ApplyFailed
from netpersona.model import parse_persona_text
from netpersona.model.jsontree import JSON
from netpersona.probe.runner import PROBE, listening, send_probes
from netpersona.testing.topology import Lab, lab

pytestmark = pytest.mark.kernel

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


@pytest.fixture
def net() -> Iterator[Lab]:
    with lab() as built:
        yield built


def _peer(name: str, address: str, persona: str, priority: int = 1) -> dict[str, object]:
    return {"instance": name, "addresses": [address], "persona": persona, "priority": priority}


def _chain_handles(applier: Applier) -> list[int]:
    return [obj["chain"]["handle"] for obj in applier.kernel.nft_table() or () if "chain" in obj]


def _connects(net: Lab, source: str) -> bool:
    ns = net.peer if source == "peer" else net.stranger
    probe = {"id": "c", "proto": "tcp", "dst": net.vm4, "port": 5432, "timeout": 0.5}
    return bool(send_probes(ns, [probe])["c"]["ok"])


def test_peer_changes_are_in_place_and_keep_established_flows(net: Lab, tmp_path: Path) -> None:
    applier = Applier(LinuxKernel(net.vm.name), StateStore(tmp_path / "state"))
    only_peer = net.facts(peers=[_peer("peer", net.peer4, "api")])
    applier.apply(compile_plan(PERSONA, only_peer), "db")
    handles = _chain_handles(applier)

    with listening(net.vm, tcp=[5432]):
        assert not _connects(net, "stranger")
        session = net.peer.popen(
            [*PROBE, "hold", net.vm4, "5432"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert session.stdin is not None
            assert session.stdout is not None
            assert session.stdout.readline() == "connected\n"

            # The stranger becomes an "api" VM with a higher priority: one set update.
            both = net.facts(
                peers=[
                    _peer("peer", net.peer4, "api"),
                    _peer("stranger", net.stranger4, "api", priority=6),
                ]
            )
            update = applier.update_peers(resolve_peer_sets(PERSONA, both))
            assert update.added >= 2  # an address and a DSCP entry
            assert _connects(net, "stranger")
            session.stdin.write("after-join\n")
            session.stdin.flush()
            assert session.stdout.readline() == "ok\n"

            # The peer leaves: no new flows from it, but its open connection lives on.
            only_stranger = net.facts(peers=[_peer("stranger", net.stranger4, "api", 6)])
            update = applier.update_peers(resolve_peer_sets(PERSONA, only_stranger))
            assert update.deleted >= 1
            assert not _connects(net, "peer")
            session.stdin.write("after-leave\n")
            session.stdin.flush()
            assert session.stdout.readline() == "ok\n"
        finally:
            session.kill()
            session.communicate(timeout=10)

    # Same chains, same handles: the table was never reloaded.
    assert _chain_handles(applier) == handles
    state = applier.store.load()
    assert state is not None
    assert state.plan.peer_sets == resolve_peer_sets(PERSONA, only_stranger)
    assert detect_drift(applier.kernel, state, applier.store.load_originals()) == []
    applier.remove()


class _LosesAdds:
    """A kernel whose element adds never arrive (the batch is sent without them)."""

    def __init__(self, inner: LinuxKernel) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def nft_load(self, document: JSON) -> None:
        kept = [c for c in document["nftables"] if "add" not in c or "element" not in c["add"]]
        self.inner.nft_load({"nftables": kept})


def test_the_readback_asks_the_kernel_for_exactly_the_changed_keys(
    net: Lab, tmp_path: Path
) -> None:
    kernel = LinuxKernel(net.vm.name)
    applier = Applier(kernel, StateStore(tmp_path / "state"))
    applier.apply(compile_plan(PERSONA, net.facts(peers=[_peer("p", net.peer4, "api")])), "db")
    assert kernel.nft_holds("peer_addrs_v4", [net.peer4], held=True)
    assert not kernel.nft_holds("peer_addrs_v4", [net.peer4, net.stranger4], held=True)
    assert kernel.nft_holds("peer_addrs_v4", [net.stranger4], held=False)
    assert not kernel.nft_holds("peer_addrs_v4", [net.peer4, net.stranger4], held=False)
    # Asking changed nothing.
    assert kernel.nft_holds("peer_addrs_v4", [net.peer4], held=True)

    both = net.facts(peers=[_peer("p", net.peer4, "api"), _peer("s", net.stranger4, "api")])
    lossy = Applier(_LosesAdds(kernel), applier.store)
    with pytest.raises(ApplyFailed, match="peer_addrs_v4: an element added is not in the kernel"):
        lossy.update_peers(resolve_peer_sets(PERSONA, both))
    # Nothing was recorded: the state still says what the kernel holds, and the next update
    # (through a kernel that works) brings the stranger in.
    state = applier.store.load()
    assert state is not None
    assert state.plan.peer_sets.addrs_v4 == (net.peer4,)
    assert applier.update_peers(resolve_peer_sets(PERSONA, both)).added == 1
    assert kernel.nft_holds("peer_addrs_v4", [net.peer4, net.stranger4], held=True)
    assert StateStore(tmp_path / "state").load() == applier.store.load()
    # A map element: the stranger's DSCP comes with a higher priority and goes with it.
    high = net.facts(peers=[_peer("p", net.peer4, "api"), _peer("s", net.stranger4, "api", 6)])
    assert applier.update_peers(resolve_peer_sets(PERSONA, high)).added == 1
    assert kernel.nft_holds("peer_dscp_v4", [net.stranger4], held=True)
    assert applier.update_peers(resolve_peer_sets(PERSONA, both)).deleted == 1
    assert kernel.nft_holds("peer_dscp_v4", [net.stranger4], held=False)
    applier.remove()
