"""``netpersona lab demo`` end to end, as a user runs it: real namespaces, processes, packets.

One run proves the whole chain: a deliberately wrong expectation must come out as exactly one
mismatch per matrix (so every other probe agreed with the spec), the threat-level change must
show with the overlay that caused it, the failed run must keep its logs and say where, and
nothing may be left behind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

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
    kept = re.search(r"the service's and agents' logs are kept in (\S+)", out)
    try:
        assert done.returncode == 1, out + done.stderr
        # A log file: stdout is a pipe here, so no carriage returns or escape sequences.
        assert "\r" not in out
        assert "\x1b" not in out
        assert "expected: from the spec's oracle, netpersona.reachability" in out
        assert "building the lab:" in out
        message = "mismatch web1 -> api1 tcp-allowed: expected dropped, got delivered"
        assert out.count(message) == 2, out
        checked = re.findall(r"(\d+)/(\d+) probes agree with the spec", out)
        assert len(checked) == 2, out
        for agreed, total in checked:
            assert int(total) > 300
            assert int(agreed) == int(total) - 1
        assert "re-convergence after threat_level=high" in out
        assert "{'threat_level'" not in out
        # The raised threat level stops broadcast discovery, and the summary says which
        # overlay did it.
        assert "What changed from the first matrix (threat_level=low) to the second" in out
        assert "overlay threat-high-no-broadcast on disc1, disc2: 2 probe(s)" in out
        assert "disc1 -> disc2 B (udp/6000 broadcast): now dropped" in out
        assert "FAIL: 2 probe(s) disagree with the spec" in out
        assert "lab removed" in out
        # A failed run keeps the service's and agents' logs and says where.
        assert kept, out
        for log in ("service", "agent-web1", "agent-admin1"):
            assert (Path(kept.group(1)) / f"{log}.log").is_file()
        assert not [name for name in list_netns() if name.startswith(f"{prefix}-")]
    finally:
        if kept:
            shutil.rmtree(kept.group(1), ignore_errors=True)
        (RUN_DIR / f"{prefix}.lock").unlink(missing_ok=True)
