"""Every example is accepted by nft's own parsers, as text and as JSON (``nft -c``).

The text is what ``netpersona plan --format nft`` prints, run as a user would; the JSON is the
batch the applier loads. Each check runs ``nft -c`` inside a new, empty network namespace
(``unshare --net``), so it never sees or touches the host's rules.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from netpersona.cli.plan_cmd import load_facts, load_persona
from netpersona.compiler import compile_plan, replace_table_batch
from tests.golden.test_golden import EXAMPLES, facts_for

pytestmark = pytest.mark.kernel


def nft_check(script: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["unshare", "--net", "nft", "-c", *flags, "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_nft_accepts_plan_text(path: Path) -> None:
    argv = [sys.executable, "-m", "netpersona", "plan", str(path)]
    argv += ["--facts", str(facts_for(path.stem)), "--format", "nft"]
    script = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert script.startswith("add table inet netpersona\n")
    check = nft_check(script)
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_nft_accepts_plan_json(path: Path) -> None:
    plan = compile_plan(load_persona(path), load_facts(facts_for(path.stem)))
    check = nft_check(json.dumps(replace_table_batch(plan.nftables_objects())), "-j")
    assert check.returncode == 0, check.stderr


def test_nft_check_rejects_a_broken_script() -> None:
    """The check above can fail: a script nft does not accept is reported as such."""
    check = nft_check("add rule inet netpersona input tcp dport 22 frobnicate\n")
    assert check.returncode != 0
