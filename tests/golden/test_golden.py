"""Golden tests: every example persona compiles to the plan checked in beside this file.

A change to the compiler shows up here as a diff of the expected files. When the change is
meant, regenerate them with ``pytest tests/golden --regen-golden`` and review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netpersona.cli.plan_cmd import load_facts, load_persona, nft_script
from netpersona.compiler import compile_plan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
EXPECTED = Path(__file__).parent / "expected"
# Examples that describe a VM with a premium and a standard uplink (spec section 6).
TWO_UPLINKS = {"admin-workstation", "bulk-transfer"}


def facts_for(name: str) -> Path:
    facts = "two-uplinks" if name in TWO_UPLINKS else "default"
    return ROOT / "examples" / "facts" / f"{facts}.yaml"


def test_corpus_covers_every_mode_and_profile() -> None:
    seen = set()
    for path in EXAMPLES:
        persona = load_persona(path)
        seen.add((persona.communication_mode.value, persona.security_profile.value))
    modes = ("broadcast", "unicast", "multicast", "restricted")
    assert seen == {(m, p) for m in modes for p in ("low", "medium", "high")}
    assert len(EXAMPLES) >= 12


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_matches_expected_plan(path: Path, request: pytest.FixtureRequest) -> None:
    plan = compile_plan(load_persona(path), load_facts(facts_for(path.stem)))
    actual_json = (
        json.dumps({"digest": plan.digest, **plan.to_json()}, indent=1, sort_keys=True) + "\n"
    )
    actual_nft = nft_script(plan)
    json_file, nft_file = EXPECTED / f"{path.stem}.json", EXPECTED / f"{path.stem}.nft"
    if request.config.getoption("--regen-golden"):
        json_file.write_text(actual_json)
        nft_file.write_text(actual_nft)
    assert json_file.exists(), f"no expected plan for {path.name}: run pytest --regen-golden"
    assert actual_json == json_file.read_text()
    assert actual_nft == nft_file.read_text()


def test_plan_is_deterministic_and_hash_stable() -> None:
    path = ROOT / "examples" / "db-restricted.yaml"
    facts = load_facts(facts_for(path.stem))
    first = compile_plan(load_persona(path), facts)
    second = compile_plan(load_persona(path), facts)
    assert first == second
    assert first.digest == second.digest
    # The hash is of canonical JSON, so it is the same on every machine and Python run.
    expected = json.loads((EXPECTED / "db-restricted.json").read_text())["digest"]
    assert first.digest == expected
