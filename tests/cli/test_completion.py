"""``--install-completion`` and ``--show-completion``: Click's scripts, for the shell asked for
or the one ``$SHELL`` names."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.service.serve_process import NETPERSONA


def _run(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "SHELL"} | env
    return subprocess.run(
        [NETPERSONA, *argv], capture_output=True, text=True, env=environment, check=False
    )


@pytest.mark.subprocess
def test_install_writes_the_script_and_sources_it_once_from_bashrc(tmp_path: Path) -> None:
    for _ in range(2):
        done = _run("--install-completion", HOME=str(tmp_path), SHELL="/bin/bash")
        assert done.returncode == 0, done.stderr
    script = tmp_path / ".bash_completions" / "netpersona.sh"
    assert "_NETPERSONA_COMPLETE=bash_complete" in script.read_text()
    assert (tmp_path / ".bashrc").read_text().splitlines() == [f"source {script}"]


@pytest.mark.subprocess
@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_show_prints_the_script_of_the_shell_asked_for(shell: str) -> None:
    done = _run("--show-completion", shell)
    assert done.returncode == 0, done.stderr
    assert f"_NETPERSONA_COMPLETE={shell}_complete" in done.stdout


@pytest.mark.subprocess
def test_a_shell_without_completion_is_a_usage_error() -> None:
    done = _run("--show-completion", SHELL="/usr/bin/tcsh")
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("error (usage_error) ")
    assert "'tcsh' is not a shell with completion" in line
