"""``netpersona --show-completion [SHELL]`` and ``--install-completion [SHELL]``.

The scripts are Click's own (bash, zsh and fish): each asks ``netpersona`` itself for the
candidates, with ``_NETPERSONA_COMPLETE`` set, so completion always matches the installed
commands. Without a SHELL, the shell is the one ``$SHELL`` names.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from click.shell_completion import get_completion_class

__all__ = ["SHELLS", "install_completion", "show_completion"]

SHELLS = ("bash", "zsh", "fish")


def _shell(value: str) -> str:
    shell = value or Path(os.environ.get("SHELL", "")).name
    if shell not in SHELLS:
        raise click.BadParameter(
            f"{shell or '$SHELL (unset)'!r} is not a shell with completion: one of"
            f" {', '.join(SHELLS)}"
        )
    return shell


def _script(ctx: click.Context, shell: str) -> str:
    root = ctx.find_root()
    prog = root.info_name or "netpersona"
    completion = get_completion_class(shell)
    assert completion is not None  # every name in SHELLS has one
    return completion(
        root.command, {}, prog, f"_{prog.replace('-', '_').upper()}_COMPLETE"
    ).source()


def show_completion(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None or ctx.resilient_parsing:
        return
    sys.stdout.write(_script(ctx, _shell(value)) + "\n")
    ctx.exit(0)


def install_completion(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Write the script where the shell finds it (bash: sourced from ~/.bashrc)."""
    if value is None or ctx.resilient_parsing:
        return
    shell = _shell(value)
    home = Path.home()
    target = {
        "bash": home / ".bash_completions" / "netpersona.sh",
        "zsh": home / ".zfunc" / "_netpersona",
        "fish": home / ".config" / "fish" / "completions" / "netpersona.fish",
    }[shell]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(_script(ctx, shell) + "\n")
    rc, line = {
        "bash": (home / ".bashrc", f"source {target}"),
        "zsh": (home / ".zshrc", "fpath+=~/.zfunc; autoload -Uz compinit; compinit"),
        "fish": (None, ""),
    }[shell]
    if rc is not None:
        text = rc.read_text() if rc.is_file() else ""
        if line not in text:
            rc.write_text(f"{text.rstrip()}\n{line}\n".lstrip())
    sys.stdout.write(f"{shell} completion installed in {target}; a new shell picks it up\n")
    ctx.exit(0)
