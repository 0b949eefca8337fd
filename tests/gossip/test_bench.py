"""A tiny run of bench/gossip/run.py, so the benchmark keeps working (the full run is long)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from netpersona.system.command import run

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gossip" / "run.py"


@pytest.mark.subprocess
def test_bench_smoke_prints_json_with_every_figure() -> None:
    out = run([sys.executable, str(SCRIPT), "--nodes", "60", "--loss", "0,0.3"], timeout=120)
    report = json.loads(out.stdout)
    assert [r["loss"] for r in report["results"]] == [0.0, 0.3]
    for result in report["results"]:
        assert result["reached"] == 60
        assert result["rounds_to_999"] <= result["rounds_to_all"]
        assert result["bytes_per_s_per_node"] > 0
        assert result["background_bytes_per_s_per_node"] > 0
