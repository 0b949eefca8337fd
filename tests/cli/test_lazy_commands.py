"""The command line imports a command's module only when that command runs.

``netpersona --help`` lists every command from the table in ``cli/main.py``; these tests keep
that table true to the modules, and check in fresh interpreters what a command loads.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from netpersona.cli.main import COMMANDS, load_commands

EXAMPLE = Path(__file__).parents[2] / "examples" / "api-server.yaml"
MODULES = sorted({module for module, _ in COMMANDS.values()})


@pytest.mark.parametrize("module", MODULES)
def test_the_table_lists_each_command_with_its_own_help(module: str) -> None:
    commands = load_commands(module)
    listed = {name for name, (home, _) in COMMANDS.items() if home == module}
    assert set(commands) == listed
    for name, command in commands.items():
        assert (command.help or "").split("\n\n")[0].strip() == COMMANDS[name][1], name


def _loaded_after(code: str) -> set[str]:
    script = f"import sys; {code}; import json; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


def _tops(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules} | {m for m in modules if m.startswith("netpersona")}


@pytest.mark.subprocess
def test_the_root_command_imports_no_command_module() -> None:
    loaded = _tops(_loaded_after("import netpersona.cli.main"))
    assert not loaded & {"httpx", "structlog", "joserfc", "cryptography", "rich", "yaml"}
    assert not {m for m in loaded if m.endswith("_cmd")}


@pytest.mark.subprocess
def test_validate_loads_neither_the_agent_nor_the_clients() -> None:
    loaded = _tops(
        _loaded_after("from netpersona.cli.main import load_commands as l; l('plan_cmd')")
    )
    assert not loaded & {"httpx", "joserfc", "cryptography", "fastapi", "netpersona.agent"}


@pytest.mark.subprocess
def test_the_agent_without_gossip_loads_no_signing_library_and_no_console() -> None:
    loaded = _tops(
        _loaded_after("from netpersona.cli.main import load_commands as l; l('agent_cmd')")
    )
    assert "netpersona.agent.runner" in loaded
    assert not loaded & {"joserfc", "cryptography", "fastapi", "starlette", "rich", "pygments"}


# Runs netpersona's main with the argv in sys.argv[1] (JSON), then prints every module loaded.
_RUN_AND_LIST = """
import json, sys
from netpersona.cli.main import main
sys.argv = ["netpersona", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit as exc:
    print(f"exit {exc.code}", file=sys.stderr)
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""
# What makes a command slow to start and big in memory, and that these commands never use.
_HEAVY = {"pydantic", "pydantic_core", "fastapi", "starlette", "rich", "pygments", "typer", "trio"}


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["validate", str(EXAMPLE)], 0),
        (["agent", "--help"], 0),
        (["status", "-o", "json", "--state-dir", "{tmp}"], 0),
        (["policy", "test", "--help"], 0),
        # No service there: the error line, printed without Rich.
        (["admin", "--url", "http://127.0.0.1:1", "--token", "t", "instances", "-o", "json"], 1),
    ],
)
def test_a_command_that_prints_no_table_loads_neither_pydantic_nor_rich(
    argv: list[str], code: int, tmp_path: Path
) -> None:
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    done = subprocess.run(
        [sys.executable, "-c", _RUN_AND_LIST, json.dumps(argv)],
        capture_output=True,
        text=True,
        check=False,
    )
    *_, exited, modules = done.stderr.splitlines()
    assert exited == f"exit {code}", done.stderr
    assert not _tops(set(json.loads(modules))) & _HEAVY


@pytest.mark.subprocess
def test_the_agent_process_loads_neither_pydantic_nor_rich() -> None:
    agent = Path(__file__).parents[2] / "src" / "netpersona" / "agent"
    modules = sorted(f"netpersona.agent.{p.stem}" for p in agent.glob("*.py"))
    # As `netpersona agent` loads them: through its command (structlog without rich).
    code = "; ".join(
        ["import netpersona.cli.main as m; m.load_commands('agent_cmd')"]
        + [f"import {m}" for m in modules]
    )
    loaded = _tops(_loaded_after(code))
    assert "netpersona.agent.runner" in loaded
    assert not loaded & _HEAVY
