"""The ``netpersona`` command: one Click group, with each group of commands in its own module.

Errors from the :mod:`netpersona.errors` tree are turned into lines on stderr and the error's
exit code here, once, so no command handles them itself. Every line has one form,
``error (<code>) <message>``; a document with several problems gets one line per problem.

A command's module is imported only when that command runs (:class:`LazyCommands`): ``--help``
lists the commands from :data:`COMMANDS` alone, and ``netpersona validate`` never loads the
agent, the service or the admin client. Each module still says its commands in ``register``;
a test checks that the table's help lines are the commands' own.

The command line is plain Click (docs/cli.md says why not Typer): it imports neither pydantic
nor Rich, so a command that prints no table loads neither.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from netpersona.cli import completion, install
from netpersona.errors import NetpersonaError

# command -> (the module under netpersona.cli whose ``register`` adds it, its help line)
COMMANDS: dict[str, tuple[str, str]] = {
    "plan": ("plan_cmd", "Print what PERSONA would do to a VM's kernel. Touches nothing."),
    "validate": (
        "plan_cmd",
        "Check persona documents: one line per error, exit 1 if any is invalid.",
    ),
    "schema": ("plan_cmd", "Print the JSON Schema of a persona document."),
    "protocols": ("plan_cmd", "List the built-in service names usable in allowed_protocols."),
    "apply": (
        "apply_cmd",
        "Apply PERSONA to this VM's kernel, all or nothing, verified by reading it back.",
    ),
    "confirm": ("apply_cmd", "Keep the persona applied with --confirm-timeout."),
    "remove": (
        "apply_cmd",
        "Remove the persona and restore what the VM had before the first apply.",
    ),
    "status": (
        "apply_cmd",
        "What is applied, drop counters by reason, and what drifted since apply.",
    ),
    "serve": ("serve_cmd", "Run the metadata service (VM-facing API, admin API, /metrics)."),
    "agent": (
        "agent_cmd",
        "Query this VM's persona, apply it, keep watching, and report to the service.",
    ),
    "policy": (
        "policy_cmd",
        "Assign personas by policy: validate, test, explain and diff, offline on files.",
    ),
    "token": ("serve_cmd", "Admin API tokens (works on the database directly)."),
    "keys": ("serve_cmd", "Certificate signing keys (works on DATA_DIR's key file)."),
    "db": ("db_cmd", "The service's database (works on it directly)."),
    "admin": ("admin_cmd", "Manage a running metadata service (instances, personas, pins)."),
    "lab": ("lab_cmd", "The whole system on this machine, VMs as network namespaces."),
}


# Packages that others import only for an extra netpersona never uses: a terminal toolkit for
# structlog's pretty console tracebacks and httpx's own command line, and trio, the event loop
# httpcore supports beside asyncio (the agent runs on asyncio; trio comes with other tools).
_UNUSED_EXTRAS = ("rich", "pygments", "trio")
_IMPORTED_WITHOUT_THEM = ("httpx", "httpcore", "structlog")
# The agent prints nothing with rich; apply/status/remove and admin load it only for a table.
_WITHOUT_UNUSED_EXTRAS = frozenset({"agent_cmd", "apply_cmd", "admin_cmd"})


def _import_without_unused_extras() -> None:
    """Import structlog, httpx and httpcore with rich, pygments and trio hidden, so that they
    skip those extras (about 190 modules and 12 MB resident in the agent). Anything that prints
    with rich later imports it as usual."""
    if any(name in sys.modules for name in (*_UNUSED_EXTRAS, *_IMPORTED_WITHOUT_THEM)):
        return
    for name in _UNUSED_EXTRAS:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        for name in _IMPORTED_WITHOUT_THEM:
            importlib.import_module(name)
    finally:
        for name in _UNUSED_EXTRAS:
            del sys.modules[name]


def load_commands(module: str) -> dict[str, click.Command]:
    """The click commands that ``netpersona.cli.<module>.register`` adds, by name."""
    if module in _WITHOUT_UNUSED_EXTRAS:
        _import_without_unused_extras()
    registers = importlib.import_module(f"netpersona.cli.{module}").register
    holder = click.Group()
    registers(holder)
    return dict(holder.commands)


class LazyCommands(click.Group):
    """The root group: a placeholder per command for help, the real one when it runs."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for name, (_, help_line) in COMMANDS.items():
            self.commands[name] = click.Command(name, help=help_line, short_help=help_line)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, placeholder, rest = super().resolve_command(ctx, args)
        if name in COMMANDS:
            real = load_commands(COMMANDS[name][0])[name]
            self.commands[name] = real
            return name, real, rest
        return name, placeholder, rest


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        sys.stdout.write(f"netpersona {install.package_version()}\n")
        ctx.exit(0)


@click.group(
    cls=LazyCommands,
    name="netpersona",
    no_args_is_help=True,
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print the version and exit.",
)
# --install-completion / --show-completion (bash, zsh, fish): docs/cli.md.
@click.option(
    "--install-completion",
    metavar="[SHELL]",
    is_flag=False,
    flag_value="",
    expose_value=False,
    is_eager=True,
    callback=completion.install_completion,
    help="Install completion for this shell ($SHELL), or for SHELL (bash, zsh, fish).",
)
@click.option(
    "--show-completion",
    metavar="[SHELL]",
    is_flag=False,
    flag_value="",
    expose_value=False,
    is_eager=True,
    callback=completion.show_completion,
    help="Print the completion script for this shell, or for SHELL, to install it yourself.",
)
def app() -> None:
    """Network personas for Linux VMs: one document says how a VM communicates."""


def every_command() -> click.Group:
    """The root click group with every command loaded (for documentation and its tests)."""
    for name, (module, _) in COMMANDS.items():
        app.commands[name] = load_commands(module)[name]
    return app


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except ModuleNotFoundError as exc:
        install.exit_if_extra_missing(exc)
        raise
    except NetpersonaError as exc:
        for line in str(exc).splitlines() or [""]:
            _error_line(exc.code, line)
        sys.exit(exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:
        # A group run without a command: its help, on stdout as `--help` prints it.
        print(exc.ctx.get_help() if exc.ctx is not None else "")
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        _usage_error(exc)
        sys.exit(exc.exit_code)
    except click.Abort:
        _error_line("error", "aborted")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _error_line(code: str, line: str, suffix: str = "") -> None:
    """One ``error (<code>) <message>`` line on stderr; "error" in red on a terminal."""
    colour = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    word = "\033[31merror\033[0m" if colour else "error"
    sys.stderr.write(f"{word} ({code}) {line}{suffix}\n")


def _usage_error(exc: click.ClickException) -> None:
    """A command line error in the one error form, with where to find help."""
    message = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
    for line in str(message).splitlines() or [""]:
        _error_line("usage_error", line, where)
        where = ""
