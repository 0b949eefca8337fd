"""A tiny run of bench/gossip/cluster.py (real namespaces and UDP), so the benchmark keeps
working; the 30-VM run with Serf beside it is documented in docs/propagation.md."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from netpersona.system.command import run

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gossip" / "cluster.py"


@pytest.mark.kernel
def test_cluster_bench_reaches_every_vm_and_counts_bytes() -> None:
    argv = [sys.executable, str(SCRIPT), "--vms", "5", "--changes", "2", "--background", "2"]
    report = json.loads(run(argv, timeout=240).stdout)
    assert report["vms"] == 5
    assert [c["origin"] for c in report["changes"]] == ["vm000", "vm002"]
    for change in report["changes"]:
        assert 0 < change["first_s"] <= change["median_s"] <= change["all_s"] < 30
        # The kernel saw the datagrams the nodes say they sent.
        assert change["kernel_bytes_per_node_in_window_mean"] > 0
        assert change["bytes_per_node_in_window_mean"] > 0
    # Idle traffic (one push-pull per node per ~30 s) is measured, though 2 s may see none.
    assert set(report["background_bytes_per_s_per_node"]) >= {"mean", "max", "kernel_mean"}
