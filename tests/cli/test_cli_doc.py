"""docs/cli.md says what the command line does: its exit codes table is the errors tree's, and
every option it names has its environment variable in every command that takes it."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netpersona import errors
from netpersona.cli import install
from netpersona.cli.main import every_command
from tests.service.serve_process import NETPERSONA

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
EXIT_ROW = re.compile(r"^\| `([a-z_]+)` \| (\d+) \| ")
OPTION_ROW = re.compile(r"^\| `(--[a-z-]+)` \| `(NETPERSONA_[A-Z_]+)` \| (.+?) \| ")


def _tree() -> list[type[errors.NetpersonaError]]:
    classes = [getattr(errors, name) for name in errors.__all__]
    return [c for c in classes if isinstance(c, type) and issubclass(c, errors.NetpersonaError)]


def test_the_documented_exit_codes_are_the_errors_tree() -> None:
    documented = [
        (m.group(1), int(m.group(2)))
        for line in DOC.read_text().splitlines()
        if (m := EXIT_ROW.match(line))
    ]
    assert len(documented) == len(dict(documented)), "a code is documented twice"
    assert dict(documented) == {cls.code: cls.exit_code for cls in _tree()}


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """Every command and group with its path (``admin``, ``db status``, ...)."""
    yield " ".join(path), command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def _documented_options() -> dict[str, tuple[str, set[str]]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        match = OPTION_ROW.match(line)
        if match:
            option, variable, commands = match.groups()
            rows[option] = (variable, set(re.findall(r"`([a-z -]+?)(?: \.\.\.)?`", commands)))
    return rows


def test_each_documented_option_reads_its_variable_wherever_it_is_taken() -> None:
    documented = _documented_options()
    assert set(documented) == {
        "--url",
        "--token",
        "--token-file",
        "--admin-socket",
        "--metadata-url",
        "--state-dir",
        "--data-dir",
    }
    taken: dict[str, set[str]] = {option: set() for option in documented}
    for path, command in _commands(every_command()):
        for param in command.params:
            for option in set(param.opts) & set(documented):
                variable, _ = documented[option]
                assert param.envvar == variable, f"netpersona {path} {option}"
                # The documented command, or the group (db, token, keys) whose commands take it.
                taken[option].add(path if path in documented[option][1] else path.split()[0])
    for option, (_, commands) in documented.items():
        assert taken[option] == commands, option


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["admin", "instances", "--bogus"], "No such option '--bogus'"),
        (["protocols", "-o", "xml"], "'xml' is not one of 'table', 'json', 'yaml'"),
        (["admin", "can"], "Missing argument 'SRC'"),
    ],
)
def test_a_command_line_error_is_one_error_line_with_exit_2(argv: list[str], line: str) -> None:
    done = subprocess.run([NETPERSONA, *argv], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stdout == ""
    [printed] = done.stderr.splitlines()
    assert printed.startswith("error (usage_error) ")
    assert line in printed


@pytest.mark.subprocess
def test_netpersona_alone_prints_its_help() -> None:
    done = subprocess.run([NETPERSONA], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "admin" in done.stdout
    assert done.stderr == ""


@pytest.mark.subprocess
def test_a_missing_admin_socket_is_named() -> None:
    argv = [NETPERSONA, "admin", "--admin-socket", "/nonexistent/admin.sock", "--token", "np_x"]
    done = subprocess.run([*argv, "personas"], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("error (error) cannot reach /nonexistent/admin.sock ")


def test_a_missing_service_package_is_one_error_line_with_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        install.exit_if_extra_missing(ModuleNotFoundError("no fastapi", name="fastapi"))
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error (usage_error) ")
    assert "fastapi" in line
    assert install.SERVICE_HINT in line
