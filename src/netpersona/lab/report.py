"""The probe matrix on a terminal: one row per sender, one column per receiver.

Each cell has one letter per probe, upper case when the packet got through and a dot when it
did not: T tcp to an allowed port, t tcp to a denied port, U udp, I icmp echo, B subnet
broadcast, M multicast to a listed group, m to an unlisted one. Green means what the spec
expects; red on white is a mismatch, listed below the matrix with the counters that fired.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from netpersona.lab.expect import ProbeKind
from netpersona.lab.matrix import Cell

__all__ = ["print_matrix"]

LETTERS = {
    ProbeKind.TCP_ALLOWED: "T",
    ProbeKind.TCP_DENIED: "t",
    ProbeKind.UDP: "U",
    ProbeKind.ICMP: "I",
    ProbeKind.BROADCAST: "B",
    ProbeKind.MULTICAST_LISTED: "M",
    ProbeKind.MULTICAST_UNLISTED: "m",
}


def _glyph(cell: Cell) -> Text:
    letter = LETTERS[cell.kind]
    if cell.expected is None:
        return Text("-", style="dim")
    shown = letter if cell.actual else "."
    if cell.mismatch:
        return Text(shown, style="bold red on white")
    return Text(shown, style="green" if cell.actual else "dim")


def print_matrix(
    console: Console, title: str, cells: Sequence[Cell], personas: dict[str, str]
) -> int:
    """Print the matrix; return the number of mismatches."""
    names = list(dict.fromkeys([c.src for c in cells] + [c.dst for c in cells]))
    table = Table(title=title, show_lines=False, header_style="bold")
    table.add_column("from \\ to", style="bold")
    for name in names:
        table.add_column(f"{name}\n[dim]{personas.get(name, '-')}[/dim]", justify="center")
    for src in names:
        row: list[Text | str] = [f"{src} [dim]{personas.get(src, '-')}[/dim]"]
        for dst in names:
            if dst == src:
                row.append(Text("·", style="dim"))
                continue
            text = Text()
            for cell in cells:
                if cell.src == src and cell.dst == dst:
                    text.append_text(_glyph(cell))
            row.append(text)
        table.add_row(*row)
    console.print(table)
    console.print(
        "[dim]T tcp allowed port · t tcp denied port · U udp · I icmp echo · B broadcast · "
        "M multicast listed group · m unlisted group; letter = delivered, . = dropped[/dim]"
    )
    mismatches = [c for c in cells if c.mismatch]
    for cell in mismatches:
        want = "delivered" if cell.expected else "dropped"
        got = "delivered" if cell.actual else "dropped"
        fired = ", ".join(cell.counters) or "no drop counter moved"
        console.print(
            f"[bold red]mismatch[/bold red] {cell.src} -> {cell.dst} {cell.kind}: "
            f"expected {want}, got {got} ({fired})"
        )
    checked = sum(1 for c in cells if c.expected is not None)
    style = "green" if not mismatches else "bold red"
    console.print(f"[{style}]{checked - len(mismatches)}/{checked} probes as expected[/{style}]")
    return len(mismatches)
