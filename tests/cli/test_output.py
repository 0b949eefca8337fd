"""How a table is printed: whole off a terminal, folded (never cut) on a narrow one."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table

from netpersona.cli.output import print_table, stdout_console

LONG = "vm-" + "0123456789" * 6


def _table() -> Table:
    table = Table("id", "labels")
    table.add_row(LONG, "team=platform-networking-platform-networking-end")
    return table


def test_a_narrow_terminal_folds_a_long_id_instead_of_cutting_it() -> None:
    console = Console(file=io.StringIO(), width=40, force_terminal=True, color_system=None)
    print_table(console, _table())
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "…" not in text
    cells = "".join(line.split("│")[1].strip() for line in text.splitlines() if "│" in line)
    assert LONG in cells


def test_off_a_terminal_the_console_is_wide_whatever_columns_says(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    console = stdout_console()
    assert not console.is_terminal
    print_table(console, _table())
    [row] = [line for line in capsys.readouterr().out.splitlines() if LONG in line]
    assert "team=platform-networking-platform-networking-end" in row
