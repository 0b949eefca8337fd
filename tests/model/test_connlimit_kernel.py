"""max_connections' upper bound is what nft and the kernel keep exactly (``ct count``, u32).

Each check loads a ruleset into a new, empty network namespace (``unshare --net``) and reads
it back, so it never sees or touches the host's rules.
"""

from __future__ import annotations

import subprocess

import pytest

from netpersona.cli.plan_cmd import load_facts, nft_script
from netpersona.compiler import compile_plan
from netpersona.model import parse_persona
from netpersona.model.parse import MAX_CONNECTIONS
from tests.golden.test_golden import EXAMPLES, facts_for

pytestmark = pytest.mark.kernel


def load_and_list(script: str) -> str:
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", "nft -f - && nft list ruleset"],
        input=script,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_largest_max_connections_is_loaded_exactly() -> None:
    persona = parse_persona(
        {
            "communication_mode": "unicast",
            "security_profile": "medium",
            "allowed_protocols": ["ssh"],
            "priority": 1,
            "qos_parameters": {"max_connections": MAX_CONNECTIONS},
        }
    )
    path = next(p for p in EXAMPLES if p.stem == "web-frontend")
    listed = load_and_list(nft_script(compile_plan(persona, load_facts(facts_for(path.stem)))))
    assert listed.count(f"ct count over {MAX_CONNECTIONS} ") == 2  # IPv4 and IPv6


@pytest.mark.parametrize(("written", "kept"), [(2**32 - 1, 2**32 - 1), (2**32, 0)])
def test_nft_keeps_a_count_in_32_bits_and_wraps_past_it(written: int, kept: int) -> None:
    """Why the bound is not 2**63: nft takes 2**32 without a word and enforces "over 0"."""
    script = (
        "table inet t {\n chain c {\n  type filter hook input priority 0;\n"
        f"  ct state new meter m size 65535 {{ ip saddr ct count over {written} }} drop\n }}\n}}\n"
    )
    assert f"ct count over {kept} }}" in load_and_list(script)
