"""``netpersona lab status`` on a running lab: ``-o json`` and ``-o yaml`` carry what the table
shows, in the shape docs/cli.md gives, and say each agent holds what the service assigns."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from netpersona.cli.lab_cmd import RUN_DIR
from netpersona.lab.fleet import netpersona_argv
from netpersona.system.netns import list_netns
from tests.cli.cli_doc import documented_json
from tests.lab.test_lab_teardown import two_vm_scenario

pytestmark = [pytest.mark.kernel, pytest.mark.slow]


def lab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*netpersona_argv(), "lab", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def running_lab(tmp_path: Path) -> Iterator[str]:
    prefix = f"npst{os.getpid() % 100000}"
    try:
        up = lab(
            "up", "--prefix", prefix, "--scenario", str(two_vm_scenario(tmp_path)), timeout=300
        )
        assert up.returncode == 0, up.stdout + up.stderr
        yield prefix
    finally:
        down = lab("down", "--prefix", prefix)
        (RUN_DIR / f"{prefix}.lock").unlink(missing_ok=True)
        shutil.rmtree(RUN_DIR / prefix, ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr
        # Other people make namespaces on this machine meanwhile: look at this lab's only.
        assert not [name for name in list_netns() if name.startswith(f"{prefix}-")]


def test_lab_status_prints_json_yaml_and_a_table(running_lab: str) -> None:
    done = lab("status", "--prefix", running_lab, "-o", "json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    kind, keys = documented_json()["lab status"]
    assert kind == "list of"
    assert [row["vm"] for row in rows] == ["web1", "api1"]
    for row in rows:
        assert sorted(row) == sorted(keys)
        assert row["in_force"] is True, row
        assert row["agent"]["persona"] == row["persona"]
        assert row["agent"]["version"] == row["version"]
        assert row["agent"]["result"] in ("applied", "unchanged", "peers-updated")
    assert [row["persona"] for row in rows] == ["web-frontend", "api-server"]

    as_yaml = lab("status", "--prefix", running_lab, "-o", "yaml")
    assert as_yaml.returncode == 0, as_yaml.stderr
    # The agents may have rewritten their records in between (updated_at, counters).
    assert [
        {k: v for k, v in row.items() if k != "agent"} for row in yaml.safe_load(as_yaml.stdout)
    ] == [{k: v for k, v in row.items() if k != "agent"} for row in rows]

    table = lab("status", "--prefix", running_lab)
    assert table.returncode == 0, table.stderr
    assert "web-frontend v1" in table.stdout
    assert "api-server v1" in table.stdout
    assert not table.stdout.lstrip().startswith("[")
