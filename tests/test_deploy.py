"""The systemd units in deploy/ start commands that exist, with options the CLI knows, pass
``systemd-analyze verify`` as they are, and keep their hardening."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from netpersona.cli.main import every_command

UNITS = sorted((Path(__file__).resolve().parents[1] / "deploy" / "systemd").glob("*.service"))
SYSTEMD_UNITS = Path("/usr/lib/systemd/system")
needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or not SYSTEMD_UNITS.is_dir(),
    reason="systemd-analyze is not installed",
)


def service_section(unit: Path) -> configparser.SectionProxy:
    # strict=False: systemd allows a key more than once (Documentation=, SystemCallFilter=).
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read(unit)
    return parser["Service"]


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_execstart_matches_the_cli(unit: Path) -> None:
    argv = shlex.split(service_section(unit)["ExecStart"])
    # The path the .deb installs (scripts/build links it to the package's environment).
    assert argv[0] == "/usr/bin/netpersona"
    command = every_command()
    sub = command.commands[argv[1]]
    known = {opt for param in sub.params for opt in getattr(param, "opts", [])}
    given = {arg for arg in argv[2:] if arg.startswith("--")}
    assert given <= known, given - known


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_units_wait_for_readiness_and_read_their_defaults(unit: Path) -> None:
    service = service_section(unit)
    assert service["Type"] == "notify"
    assert service["WatchdogSec"]
    name = unit.stem.removeprefix("netpersona-")
    assert service["EnvironmentFile"] == f"-/etc/default/netpersona-{name}"


@needs_systemd
@pytest.mark.subprocess
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """The real unit files, in a throwaway root that holds what they refer to: systemd's own
    units and an executable at /usr/bin/netpersona."""
    shutil.copytree(SYSTEMD_UNITS, tmp_path / "usr/lib/systemd/system", symlinks=True)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    (tmp_path / "usr/bin").mkdir(parents=True, exist_ok=True)
    (tmp_path / "usr/bin/netpersona").write_text("#!/bin/sh\n")
    (tmp_path / "usr/bin/netpersona").chmod(0o755)
    for unit in UNITS:
        shutil.copy(unit, tmp_path / "etc/systemd/system" / unit.name)
    names = [f"/etc/systemd/system/{unit.name}" for unit in UNITS]
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={tmp_path}", *names],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # Unknown keys and bad values are warnings, not failures: there must be none.
    assert result.stderr == "", result.stderr


@needs_systemd
@pytest.mark.subprocess
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_units_stay_hardened(unit: Path) -> None:
    """Exposure at most 2.5 of 10 by systemd's own measure (6.9 and 6.0 before hardening)."""
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=25", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout.splitlines()[-1:]
