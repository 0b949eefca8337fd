"""The ``netpersona`` command: one Typer app, with each group of commands in its own module.

Errors from the :mod:`netpersona.errors` tree are turned into lines on stderr and the error's
exit code here, once, so no command handles them itself. Every line has one form,
``error (<code>) <message>``; a document with several problems gets one line per problem.

A command's module is imported only when that command runs (:class:`LazyCommands`): ``--help``
lists the commands from :data:`COMMANDS` alone, and ``netpersona validate`` never loads the
agent, the service or the admin client. Each module still says its commands in ``register``;
a test checks that the table's help lines are the commands' own.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from netpersona.cli import install
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


# Packages that import a terminal toolkit only for an extra they offer (structlog's pretty
# console tracebacks, httpx's own command line), which netpersona never uses.
_CONSOLE_EXTRAS = ("rich", "pygments", "click")
_WITHOUT_CONSOLE = ("httpx", "structlog")


def _import_without_console_extras() -> None:
    """Import structlog and httpx with rich, pygments and click hidden, so that they skip their
    console extras (about 100 modules and 8 MB resident in the agent). Anything that prints
    with rich later imports it as usual."""
    if any(name in sys.modules for name in (*_CONSOLE_EXTRAS, *_WITHOUT_CONSOLE)):
        return
    for name in _CONSOLE_EXTRAS:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        for name in _WITHOUT_CONSOLE:
            importlib.import_module(name)
    finally:
        for name in _CONSOLE_EXTRAS:
            del sys.modules[name]


def load_commands(module: str) -> dict[str, Any]:
    """The click commands that ``netpersona.cli.<module>.register`` adds, by name."""
    if module == "agent_cmd":  # the one long-running command that prints nothing with rich
        _import_without_console_extras()
    registers = importlib.import_module(f"netpersona.cli.{module}").register
    holder = typer.Typer()
    registers(holder)
    return dict(typer.main.get_group(holder).commands)


class LazyCommands(TyperGroup):
    """The root group: a placeholder per command for help, the real one when it runs."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for name, (_, help_line) in COMMANDS.items():
            self.commands[name] = typer.core.TyperCommand(name, help=help_line)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, placeholder, rest = super().resolve_command(ctx, args)
        if name in COMMANDS:
            real = load_commands(COMMANDS[name][0])[name]
            self.commands[name] = real
            return name, real, rest
        return name, placeholder, rest


app = typer.Typer(
    cls=LazyCommands,
    rich_markup_mode=None,  # the list of commands needs no markup, and rich takes 0.2 s to load
    name="netpersona",
    help="Network personas for Linux VMs: one document says how a VM communicates.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # --install-completion / --show-completion (bash, zsh, fish, PowerShell): docs/cli.md.
    add_completion=True,
)
app.callback()(install.root_options)


def every_command() -> Any:
    """The root click group with every command loaded (for documentation and its tests)."""
    group = typer.main.get_command(app)
    for name, (module, _) in COMMANDS.items():
        group.commands[name] = load_commands(module)[name]  # type: ignore[attr-defined]
    return group


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
            _error_line(exc.code, line)
        sys.exit(exc.exit_code)
    except _CLICK_ERROR as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            # A group run without a command: its help, on stdout as `--help` prints it.
            print(exc.ctx.get_help())  # type: ignore[attr-defined]
        else:
            _usage_error(exc)
        sys.exit(getattr(exc, "exit_code", 2))
    except typer.Abort:
        _error_line("error", "aborted")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _error_line(code: str, line: str, suffix: str = "") -> None:
    """One ``error (<code>) <message>`` line on stderr (rich is loaded only when one is due)."""
    from rich.console import Console  # noqa: PLC0415
    from rich.markup import escape  # noqa: PLC0415

    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[red]error[/red] ({code}) {escape(line)}{suffix}"
    )


def _usage_error(exc: Exception) -> None:
    """A command line error in the one error form, with where to find help."""
    message = getattr(exc, "format_message", lambda: str(exc))()
    ctx = getattr(exc, "ctx", None)
    where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
    for line in str(message).splitlines() or [""]:
        _error_line("usage_error", line, where)
        where = ""
