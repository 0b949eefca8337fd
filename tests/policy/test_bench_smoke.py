"""The policy benchmark runs (tiny sizes) and reports what the docs quote."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench" / "policy" / "run.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("policy_bench", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_measures_full_and_incremental_recompute() -> None:
    bench = load_bench()
    for fleet in ("typical", "distinct"):
        result = bench.measure(300, 12, fleet, seed=3)
        assert result["instances"] == 300
        assert result["rules"] >= 12
        assert result["full"]["us_per_decision"] > 0
        assert result["label_change"]["changes"] == 200
        # Flipping threat_level moves (almost) everyone: every persona tightens.
        assert min(result["context_change"]["instances_changed"]) > 250
    # The distinct fleet's name rule is a residual: instances share signatures, and those the
    # walk leaves at that rule are settled one by one.
    distinct = bench.measure(300, 12, "distinct", seed=3)
    assert distinct["signatures"] < 300
    assert distinct["settled_alone"] > 0
    assert bench.measure(300, 12, "typical", seed=3)["settled_alone"] == 0
