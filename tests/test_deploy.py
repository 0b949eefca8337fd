"""The systemd units in deploy/ start commands that exist, with options the CLI knows."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest
import typer

from netpersona.cli.main import app

UNITS = sorted((Path(__file__).resolve().parents[1] / "deploy" / "systemd").glob("*.service"))


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_execstart_matches_the_cli(unit: Path) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read(unit)
    argv = shlex.split(parser["Service"]["ExecStart"])
    assert argv[0].endswith("/netpersona")
    command = typer.main.get_command(app)
    sub = command.commands[argv[1]]  # type: ignore[attr-defined]
    known = {opt for param in sub.params for opt in getattr(param, "opts", [])}
    given = {arg for arg in argv[2:] if arg.startswith("--")}
    assert given <= known, given - known
