"""A ``lab demo`` that fails keeps the service's and agents' logs, says where, and still
removes every namespace it made."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from netpersona.cli.lab_cmd import RUN_DIR
from netpersona.lab.fleet import netpersona_argv
from netpersona.lab.scenario import EXAMPLES
from netpersona.system.netns import list_netns

pytestmark = [pytest.mark.kernel, pytest.mark.slow]


def broken_scenario(tmp_path: Path) -> Path:
    """Two VMs; one persona the service refuses (priority 9), met half-way through the build,
    after the service has started and written its log."""
    scenario = yaml.safe_load((EXAMPLES / "lab" / "scenario.yaml").read_text())
    personas = {
        name: str((EXAMPLES / "lab" / path).resolve())
        for name, path in scenario["personas"].items()
    }
    bad = yaml.safe_load(Path(personas["web-frontend"]).read_text())
    bad["network_persona"]["priority"] = 9
    (tmp_path / "web-frontend.yaml").write_text(yaml.safe_dump(bad))
    personas["web-frontend"] = str(tmp_path / "web-frontend.yaml")
    scenario["personas"] = personas
    scenario["policy"] = str(EXAMPLES / "lab" / "policy.yaml")
    scenario["vms"] = [vm for vm in scenario["vms"] if vm["name"] in ("web1", "api1")]
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return path


def test_a_failed_demo_keeps_and_names_the_logs(tmp_path: Path) -> None:
    prefix = f"npfail{os.getpid() % 100000}"
    before = set(list_netns())
    argv = [*netpersona_argv(), "lab", "demo", "--prefix", prefix]
    argv += ["--scenario", str(broken_scenario(tmp_path))]
    kept: Path | None = None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        out = done.stdout
        assert done.returncode != 0, out + done.stderr
        assert "FAIL: stopped: " in out, out
        assert "priority" in done.stderr, done.stderr
        found = re.search(r"the service's and agents' logs are kept in (\S+)", out)
        assert found, out
        kept = Path(found.group(1))
        assert kept.parent == RUN_DIR
        assert re.fullmatch(rf"{prefix}-[0-9a-f]{{6}}-logs", kept.name)
        assert (kept / "service.log").is_file()
        assert "lab removed" in out
        assert not (RUN_DIR / prefix).exists()  # the work directory went; the logs stayed
        # Nothing the run made is left: the same namespaces as before, by exact name.
        assert set(list_netns()) - before == set()
    finally:
        if kept is not None:
            shutil.rmtree(kept, ignore_errors=True)
        (RUN_DIR / f"{prefix}.lock").unlink(missing_ok=True)
