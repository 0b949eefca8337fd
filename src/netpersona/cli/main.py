"""The ``netpersona`` command: one Typer app, with each group of commands in its own module.

Errors from the :mod:`netpersona.errors` tree are turned into lines on stderr and the error's
exit code here, once, so no command handles them itself. Every line has one form,
``error (<code>) <message>``; a document with several problems gets one line per problem.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from netpersona.cli import (
    admin_cmd,
    agent_cmd,
    apply_cmd,
    db_cmd,
    install,
    lab_cmd,
    plan_cmd,
    policy_cmd,
    serve_cmd,
)
from netpersona.errors import NetpersonaError

app = typer.Typer(
    name="netpersona",
    help="Network personas for Linux VMs: one document says how a VM communicates.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # --install-completion / --show-completion (bash, zsh, fish, PowerShell): docs/cli.md.
    add_completion=True,
)
app.callback()(install.root_options)
plan_cmd.register(app)
policy_cmd.register(app)
apply_cmd.register(app)
serve_cmd.register(app)
db_cmd.register(app)
admin_cmd.register(app)
agent_cmd.register(app)
lab_cmd.register(app)

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


# Click's own errors (a bad option, a missing argument), found from a class Typer exports, as
# Typer carries its own copy of Click.
_CLICK_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except ModuleNotFoundError as exc:
        install.exit_if_extra_missing(exc)
        raise
    except NetpersonaError as exc:
        for line in str(exc).splitlines() or [""]:
            stderr.print(f"[red]error[/red] ({exc.code}) {escape(line)}")
        sys.exit(exc.exit_code)
    except _CLICK_ERROR as exc:
        # A group run without a command has printed its help already.
        if type(exc).__name__ != "NoArgsIsHelpError":
            _usage_error(exc)
        sys.exit(getattr(exc, "exit_code", 2))
    except typer.Abort:
        stderr.print("[red]error[/red] (error) aborted")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(exc: Exception) -> None:
    """A command line error in the one error form, with where to find help."""
    message = getattr(exc, "format_message", lambda: str(exc))()
    ctx = getattr(exc, "ctx", None)
    where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
    for line in str(message).splitlines() or [""]:
        stderr.print(f"[red]error[/red] (usage_error) {escape(line)}{where}")
        where = ""
