"""The probe matrix on a terminal: one row per sender, one column per receiver.

Each cell has one letter per probe, upper case when the packet got through and a dot when it
did not: T tcp to an allowed port, t tcp to a denied port, U udp, I icmp echo, B subnet
broadcast, M multicast to a listed group, m to an unlisted one. Green means what the spec
expects; red on white is a mismatch, listed below the matrix with the counters that fired.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from netpersona.lab.expect import ProbeKind
from netpersona.lab.matrix import GROUP_KINDS, PAIR_KINDS, Cell

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


def _grid(title: str, names: list[str], cells: Sequence[Cell]) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAVY, header_style="bold", padding=(0, 1))
    table.add_column("from\\to", style="bold", no_wrap=True)
    for name in names:
        table.add_column(name, justify="center", no_wrap=True)
    for src in names:
        row: list[Text | str] = [src]
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
    return table


def print_matrix(
    console: Console, title: str, cells: Sequence[Cell], personas: dict[str, str]
) -> int:
    """Print the matrix; return the number of mismatches."""
    names = list(dict.fromkeys([c.src for c in cells] + [c.dst for c in cells]))
    legend = Table(box=box.SIMPLE, show_header=True, header_style="bold", padding=(0, 1))
    legend.add_column("VM")
    legend.add_column("persona")
    for name in names:
        legend.add_row(name, personas.get(name, "-"))
    console.print(legend)
    for part, kinds in (("unicast", PAIR_KINDS), ("broadcast and multicast", GROUP_KINDS)):
        console.print(_grid(f"{title}: {part}", names, [c for c in cells if c.kind in kinds]))
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
