"""``netpersona lab demo`` end to end, as a user runs it: real namespaces, processes, packets.

One run proves the whole chain: a deliberately wrong expectation must come out as exactly one
mismatch per matrix (so every other probe agreed with the spec), the threat-level change must
show, and nothing may be left behind.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from netpersona.cli.lab_cmd import RUN_DIR
from netpersona.lab.fleet import netpersona_argv
from netpersona.system.netns import list_netns

pytestmark = [pytest.mark.kernel, pytest.mark.slow]


def test_lab_demo_proves_personas_and_reports_a_wrong_expectation() -> None:
    prefix = f"npld{os.getpid() % 100000}"
    argv = [*netpersona_argv(), "lab", "demo", "--prefix", prefix]
    argv += ["--wrong-expectation", "web1,api1,tcp-allowed"]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "160"},
        check=False,
    )
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert out.count("mismatch web1 -> api1 tcp-allowed: expected dropped, got delivered") == 2, out
    checked = re.findall(r"(\d+)/(\d+) probes as expected", out)
    assert len(checked) == 2, out
    for agreed, total in checked:
        assert int(total) > 300
        assert int(agreed) == int(total) - 1
    assert "re-convergence after {'threat_level': 'high'}" in out
    # The raised threat level stops broadcast discovery: the second matrix shows it.
    assert "discovery" in out
    assert "lab removed" in out
    assert not [name for name in list_netns() if name.startswith(f"{prefix}-")]
    (RUN_DIR / f"{prefix}.lock").unlink(missing_ok=True)
