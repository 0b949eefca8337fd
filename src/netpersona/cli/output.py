"""``-o table|json|yaml``: how every list and show command prints what it found.

``table`` is for people (Rich tables, or lines); ``json`` and ``yaml`` are for scripts and carry
the same data, whose shape docs/cli.md fixes for each command. A table is never cut to the
terminal's width when stdout is not a terminal: piped into ``grep`` or a file, every id and
label comes out whole.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Any

from netpersona.cli.params import EnumChoice, option

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = [
    "OutputFormat",
    "data_text",
    "emit",
    "escape",
    "json_alias",
    "message_console",
    "new_table",
    "output_option",
    "pick",
    "print_table",
    "show_document",
    "stdout_console",
]

# Wide enough for any row a command prints; Rich sizes a table to its content below this.
_PIPE_WIDTH = 100_000


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


# ``@output_option``: the command gets ``output: OutputFormat``.
output_option = option(
    "--output",
    "-o",
    type=EnumChoice(OutputFormat),
    default=OutputFormat.TABLE,
    help="table (for people), json or yaml (for scripts; shapes in docs/cli.md).",
)
# The spelling these commands had before -o; kept so existing scripts go on working.
# ``@json_alias``: the command gets ``as_json: bool``.
json_alias = option("--json", "as_json", is_flag=True, hidden=True, help="Same as -o json.")


def pick(output: OutputFormat, as_json: bool) -> OutputFormat:
    """``--json`` (the old spelling) means ``-o json``."""
    return OutputFormat.JSON if as_json else output


def escape(text: str) -> str:
    """``text`` with Rich's markup escaped, for a line or cell printed with Rich."""
    from rich.markup import escape as rich_escape  # noqa: PLC0415

    return rich_escape(text)


def new_table(*columns: str, **options: Any) -> Table:
    """A Rich table (Rich is loaded here, for the table form only)."""
    from rich.table import Table  # noqa: PLC0415

    return Table(*columns, **options)


@cache
def message_console() -> Console:
    """The console a command's one-line messages go to (``deleted vm1``), made on first use."""
    from rich.console import Console  # noqa: PLC0415

    return Console(highlight=False, soft_wrap=True)


def stdout_console() -> Console:
    """A console on stdout that folds nothing when stdout is not a terminal."""
    from rich.console import Console  # noqa: PLC0415

    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = _PIPE_WIDTH
    return console


def print_table(console: Console, table: Table) -> None:
    """Print ``table``, folding a cell too wide for a terminal onto more lines instead of
    cutting it with an ellipsis (off a terminal nothing is too wide: :func:`stdout_console`)."""
    for column in table.columns:
        column.overflow = "fold"
    console.print(table)


def data_text(data: Any, output: OutputFormat) -> str:
    """``data`` as stable JSON (sorted keys, indented) or YAML (the same data)."""
    if output is OutputFormat.YAML:
        import yaml  # noqa: PLC0415

        return yaml.safe_dump(data, sort_keys=True, default_flow_style=False, allow_unicode=True)
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def emit(output: OutputFormat, data: Any, table: Callable[[Console], None]) -> None:
    """Print ``data`` as JSON or YAML, or call ``table`` to show it to a person."""
    if output is OutputFormat.TABLE:
        table(stdout_console())
        return
    sys.stdout.write(data_text(data, output))


def show_document(console: Console, data: Any) -> None:
    """The human form of a record that is a document (a persona, a policy, a status): the
    JSON itself, indented, coloured on a terminal."""
    console.print_json(json.dumps(data))
