"""What a lab run prints: what it proves and against what, the legend, each probe matrix, what
changed between the two matrices and why, and the result.

A matrix has one row per sender and one column per receiver. Each cell has one symbol per
probe (:data:`LETTERS`): the letter when the packet got through, a dot when it did not. On a
terminal, green and dim mean what the spec expects and red on white a mismatch; every mismatch
is also listed under its matrix in words, so a log file without colours says the same.

Progress (:func:`steps`, :func:`activity`) is a live bar on a terminal and one plain line per
step otherwise: no carriage returns or escape sequences in a log file.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from ipaddress import IPv4Address
from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from netpersona.lab.changes import Change, PersonaChange, Phase
from netpersona.lab.expect import ProbeKind
from netpersona.lab.matrix import GROUP_KINDS, PAIR_KINDS, Cell
from netpersona.lab.scenario import ProbeSettings, Scenario

__all__ = [
    "LETTERS",
    "activity",
    "context_text",
    "legend_rows",
    "print_changes",
    "print_intro",
    "print_legend",
    "print_phase",
    "print_result",
    "print_times",
    "steps",
]

LETTERS = {
    ProbeKind.TCP_ALLOWED: "T",
    ProbeKind.TCP_DENIED: "t",
    ProbeKind.UDP: "U",
    ProbeKind.ICMP: "I",
    ProbeKind.BROADCAST: "B",
    ProbeKind.MULTICAST_LISTED: "M",
    ProbeKind.MULTICAST_UNLISTED: "m",
}
ORACLE = "netpersona.reachability"


def context_text(context: Mapping[str, str]) -> str:
    """``threat_level=low``; ``no context`` when there is none."""
    return ", ".join(f"{k}={v}" for k, v in context.items()) or "no context"


def say(console: Console, text: str = "") -> None:
    """One line of prose, never broken by the console: a log file keeps one line per line."""
    console.print(text, soft_wrap=True)


# --- the start
def print_intro(console: Console, scenario: Scenario, workdir: Path, namespaces: str) -> None:
    """What the run proves, against what, how, and where its files and namespaces are
    (``namespaces``: the run's namespace name prefix, ``<prefix>-<run id>``)."""
    phases = f"with {context_text(scenario.context)}"
    if scenario.raised_context:
        phases += f", then again with {context_text(scenario.raised_context)}"
    lines = [
        "[bold]netpersona lab demo[/bold]: proves with real packets that every VM's kernel does "
        "what the spec (docs/persona-v1.md) says its persona means.",
        f"  expected: from the spec's oracle, {ORACLE}: a pure engine that reads two VMs' "
        "personas and labels and nothing of the compiler or the kernel (the engine behind "
        "`netpersona admin can` and the console's reachability).",
        "  actual: TCP, UDP, ICMP, broadcast and multicast probes between every ordered pair of "
        "VMs, each VM a network namespace with its own agent; the host's own network is not "
        "touched.",
        f"  scenario: {escape(str(scenario.path))}: {len(scenario.vms)} VMs, "
        f"{len(scenario.personas)} personas, assigned by the policy "
        f"{escape(scenario.policy.name)} from the VMs' labels; proven {escape(phases)}.",
        f"  this run: namespaces {escape(namespaces)}-hv (the hypervisor) and "
        f"{escape(namespaces)}-<VM>; files in {escape(str(workdir))} (ledger.jsonl: what it "
        "created, all of it removed at the end; logs/: the service's and each agent's log, "
        "kept if the run fails).",
    ]
    for line in lines:
        say(console, line)
    say(console)


def legend_rows(settings: ProbeSettings, broadcast: IPv4Address) -> list[tuple[str, str]]:
    """Every symbol a matrix can hold, and what it means."""
    return [
        ("T", "TCP connect to the first TCP port the receiver's persona allows"),
        ("t", f"TCP connect to port {settings.tcp_denied}, which no persona allows"),
        ("U", f"UDP datagram to port {settings.udp}"),
        ("I", "ICMP echo request (delivered: the reply came back)"),
        ("B", f"UDP to the subnet broadcast {broadcast}:{settings.broadcast_udp}, sent once"),
        ("M", f"UDP to multicast group {settings.listed_group}:{settings.udp}, sent once"),
        ("m", f"UDP to multicast group {settings.unlisted_group}:{settings.udp}, sent once"),
        ("letter", "delivered (for T, t and I: answered too)"),
        (".", "dropped"),
        ("-", "not probed: the receiver's persona allows no TCP port"),
        ("·", "the VM itself"),
        ("colour", "green/dim: as the spec expects; red on white: a mismatch"),
    ]


def print_legend(console: Console, settings: ProbeSettings, broadcast: IPv4Address) -> None:
    say(
        console,
        "[bold]How to read a matrix[/bold]: the row VM sends, the column VM receives; a cell "
        "has one symbol per probe, in this order: T t U I (unicast) or B M m (broadcast and "
        "multicast: did the column VM receive what the row VM sent). Every mismatch is also "
        "listed under its matrix.",
    )
    legend = Table(box=None, show_header=False, padding=(0, 2))
    legend.add_column(style="bold", no_wrap=True)
    legend.add_column()
    for symbol, meaning in legend_rows(settings, broadcast):
        legend.add_row(symbol, meaning)
    console.print(legend)
    say(console)


# --- progress
@contextlib.contextmanager
def steps(console: Console, label: str, total: int) -> Iterator[Callable[[str], None]]:
    """``step(what)`` once per step: a bar on a terminal, else one line per step."""
    if console.is_terminal:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(label, total=total)
            yield lambda what: progress.update(task, advance=1, description=what)
        return
    say(console, f"{label}:")
    done = 0

    def step(what: str) -> None:
        nonlocal done
        done += 1
        say(console, f"  [{done}/{total}] {escape(what)}")

    yield step


@contextlib.contextmanager
def activity(console: Console, what: str) -> Iterator[None]:
    """A spinner on a terminal; else a line when it starts and one when it is done."""
    if console.is_terminal:
        with console.status(what):
            yield
        return
    started = time.monotonic()
    say(console, f"{escape(what)} ...")
    yield
    say(console, f"{escape(what)}: done in {time.monotonic() - started:.1f} s")


def print_times(console: Console, title: str, took: Mapping[str, float]) -> None:
    """One line per VM, slowest last."""
    say(console, f"[bold]{escape(title)}[/bold]")
    for vm, seconds in sorted(took.items(), key=lambda item: item[1]):
        say(console, f"  {vm:<12} {seconds:6.2f} s")
    say(console)


# --- a matrix
def _glyph(cell: Cell) -> Text:
    if cell.expected is None:
        return Text("-", style="dim")
    shown = LETTERS[cell.kind] if cell.actual else "."
    if cell.mismatch:
        return Text(shown, style="bold red on white")
    return Text(shown, style="green" if cell.actual else "dim")


def _grid(title: str, names: Sequence[str], cells: Sequence[Cell]) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAVY, header_style="bold", padding=(0, 1))
    table.add_column("from \\ to", style="bold", no_wrap=True)
    for name in names:
        table.add_column(name, justify="center", no_wrap=True)
    by_pair: dict[tuple[str, str], Text] = {}
    for cell in cells:
        by_pair.setdefault((cell.src, cell.dst), Text()).append_text(_glyph(cell))
    for src in names:
        row: list[Text | str] = [src]
        for dst in names:
            row.append(Text("·", style="dim") if dst == src else by_pair.get((src, dst), Text()))
        table.add_row(*row)
    return table


def _personas(phase: Phase) -> Table:
    table = Table(box=box.SIMPLE, header_style="bold", padding=(0, 1))
    for column in ("VM", "persona", "mode", "profile", "overlays applied"):
        table.add_column(column, overflow="fold")
    for host in phase.hosts:
        p = host.persona
        table.add_row(
            host.name,
            host.persona_name or "-",
            str(p.communication_mode) if p else "-",
            str(p.security_profile) if p else "-",
            ", ".join(phase.overlays.get(host.name, ())) or "-",
        )
    return table


def mismatch_line(cell: Cell) -> str:
    want = "delivered" if cell.expected else "dropped"
    got = "delivered" if cell.actual else "dropped"
    fired = ", ".join(cell.counters) or "no drop counter moved"
    return f"mismatch {cell.src} -> {cell.dst} {cell.kind}: expected {want}, got {got} ({fired})"


def print_phase(console: Console, title: str, phase: Phase) -> int:
    """The personas, both grids, the mismatches in words and the count; the mismatches."""
    say(console, f"[bold]{escape(title)}[/bold]: the personas the service assigned")
    console.print(_personas(phase))
    names = [h.name for h in phase.hosts]
    for part, kinds in (
        ("unicast, T t U I", PAIR_KINDS),
        ("broadcast and multicast, B M m", GROUP_KINDS),
    ):
        cells = [c for c in phase.cells if c.kind in kinds]
        console.print(_grid(f"{title}: {part}", names, cells))
    mismatches = phase.mismatches
    for cell in mismatches:
        say(console, f"[bold red]{escape(mismatch_line(cell))}[/bold red]")
    agreed = phase.checked - len(mismatches)
    style = "green" if not mismatches else "bold red"
    say(
        console,
        f"[{style}]{agreed}/{phase.checked} probes agree with the spec[/{style}] "
        f"({escape(context_text(phase.context))})",
    )
    say(console)
    return len(mismatches)


# --- between the two
def _change_line(change: Change) -> str:
    word = "now delivered" if change.now_delivered else "now dropped"
    line = f"{change.src} -> {change.dst} {LETTERS[change.kind]} ({change.traffic}): {word}"
    if change.decided_by is not None:
        when = "was dropped by" if change.now_delivered else "dropped by"
        line += f"; {when} {change.decided_by}"
    return line


def change_groups(changes: Sequence[Change]) -> dict[str, list[Change]]:
    """The changes by their cause: ``overlay X`` (on which VMs), or no overlay."""
    groups: dict[str, list[Change]] = {}
    for change in changes:
        if change.overlays:
            label = ("overlay " if len(change.overlays) == 1 else "overlays ") + ", ".join(
                change.overlays
            )
        else:
            label = "no overlay (the personas themselves changed)"
        groups.setdefault(label, []).append(change)
    return groups


def print_changes(
    console: Console,
    before: Phase,
    after: Phase,
    personas: Sequence[PersonaChange],
    changes: Sequence[Change],
) -> None:
    """The personas that changed, then every probe that changed, grouped by the overlay that
    caused it, each with the oracle's deciding check."""
    a, b = context_text(before.context), context_text(after.context)
    say(console, f"[bold]What changed from the first matrix ({a}) to the second ({b})[/bold]")
    if not personas:
        say(console, "  no VM's persona changed")
    else:
        say(console, "  personas:")
        for change in personas:
            how = []
            if change.added:
                how.append("took " + ", ".join(change.added))
            if change.removed:
                how.append("lost " + ", ".join(change.removed))
            fields = f": {'; '.join(change.fields)}" if change.fields else ""
            say(
                console,
                f"    {change.vm:<10} {change.persona} {' and '.join(how) or 'changed'}{fields}",
            )
    lost = sum(1 for c in changes if not c.now_delivered)
    say(
        console,
        f"  probes: {len(changes)} changed outcome ({lost} now dropped, "
        f"{len(changes) - lost} now delivered)",
    )
    for label, group in change_groups(changes).items():
        vms = sorted({c.on_vm for c in group if c.on_vm})
        on = f" on {', '.join(vms)}" if vms else ""
        say(console, f"  [bold]{escape(label)}[/bold]{escape(on)}: {len(group)} probe(s)")
        for moved in group:
            say(console, f"    {escape(_change_line(moved))}")
    say(console)


# --- the end
def print_result(
    console: Console,
    phases: Sequence[Phase],
    left: Sequence[str],
    logs: Path | None,
    error: str | None = None,
) -> bool:
    """The last lines: whether every probe agreed, what was removed, where logs were kept.
    Returns whether the run is green."""
    mismatched = sum(len(p.mismatches) for p in phases)
    counts = ", ".join(
        f"{p.checked - len(p.mismatches)}/{p.checked} with {context_text(p.context)}"
        for p in phases
    )
    problems = [f"stopped: {error}"] if error else []
    if mismatched:
        problems.append(f"{mismatched} probe(s) disagree with the spec ({counts})")
    elif not phases and not error:
        problems.append("no matrix was proven")
    if left:
        problems.append("the lab could not be removed completely")
    if not problems:
        say(console, f"[bold green]PASS[/bold green]: every probe agrees with the spec ({counts})")
    else:
        say(console, f"[bold red]FAIL[/bold red]: {escape('; '.join(problems))}")
    say(
        console, "lab removed" if not left else f"[red]left behind: {escape(', '.join(left))}[/red]"
    )
    if logs is not None:
        say(console, f"the service's and agents' logs are kept in {escape(str(logs))}")
    return not problems
