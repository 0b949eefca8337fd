"""``netpersona lab``: the whole system on this machine, proven with real packets.

``lab demo`` is the main job: build, converge, probe, raise the threat level, converge again,
probe again, tear down; exit 1 if any probe disagrees with the spec. ``lab up | status | probe |
down`` do the same steps one at a time. Nothing touches the host's own network namespace, and
teardown removes what the lab's ledger says it created, never what merely shares its prefix.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from netpersona.lab.report import print_matrix
from netpersona.lab.run import LabRun, exclusive, remove_recorded
from netpersona.lab.scenario import DEFAULT_SCENARIO, load_scenario

__all__ = ["register"]

RUN_DIR = Path("/run/netpersona-lab")

lab_app = typer.Typer(
    help="The whole system on this machine, VMs as network namespaces.", no_args_is_help=True
)
console = Console(highlight=False)

Scenario = Annotated[Path, typer.Option(help="Scenario file (see examples/lab/scenario.yaml).")]
Prefix = Annotated[str, typer.Option(help="Name prefix of the lab's namespaces.")]


def _workdir(prefix: str) -> Path:
    return RUN_DIR / prefix


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM tears the lab down like Ctrl-C does."""

    def raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _times(title: str, took: dict[str, float]) -> None:
    """One line per VM, slowest last: how long its agent took to hold what the service says."""
    console.print(f"[bold]{title}[/bold]")
    for vm, seconds in sorted(took.items(), key=lambda item: item[1]):
        console.print(f"  {vm:<12} {seconds:6.2f} s")


@lab_app.command()
def demo(
    scenario: Scenario = DEFAULT_SCENARIO,
    prefix: Prefix = "nplab",
    wrong_expectation: Annotated[
        str | None,
        typer.Option(help="SRC,DST,PROBE: invert one expectation, to see a mismatch reported."),
    ] = None,
) -> None:
    """Build a lab, prove every persona with real packets, raise the threat level, prove again."""
    lab = LabRun(load_scenario(scenario), prefix, _workdir(prefix), console)
    override = None
    mismatches = 0
    with exclusive(lab.workdir), _terminate_as_interrupt():
        try:
            lab.build()
            took = lab.wait_converged(lab.agents_started, "waiting for every agent to converge")
            _times("convergence after start", took)
            cells, personas = lab.probe()
            if wrong_expectation:
                src, dst, kind = wrong_expectation.split(",")
                want = next(
                    c.expected for c in cells if (c.src, c.dst, c.kind.value) == (src, dst, kind)
                )
                override = {(src, dst, kind): not want}
                cells, personas = lab.probe(override)
            mismatches += print_matrix(
                console, f"probe matrix, context {dict(lab.scenario.context)}", cells, personas
            )
            if lab.scenario.raised_context:
                acked = lab.set_context(lab.scenario.raised_context)
                took = lab.wait_converged(
                    acked,
                    "raising "
                    + ", ".join(f"{k}={v}" for k, v in lab.scenario.raised_context.items()),
                )
                _times(f"re-convergence after {dict(lab.scenario.raised_context)}", took)
                cells, personas = lab.probe(override)
                mismatches += print_matrix(
                    console,
                    f"probe matrix, context {dict(lab.scenario.raised_context)}",
                    cells,
                    personas,
                )
        finally:
            with console.status("tearing the lab down"):
                left = lab.down()
            console.print(
                "lab removed" if not left else f"[red]left behind: {', '.join(left)}[/red]"
            )
    raise typer.Exit(1 if mismatches else 0)


@lab_app.command()
def up(scenario: Scenario = DEFAULT_SCENARIO, prefix: Prefix = "nplab") -> None:
    """Build a lab and leave it running (see lab status, lab probe, lab down)."""
    lab = LabRun(load_scenario(scenario), prefix, _workdir(prefix), console)
    with exclusive(lab.workdir), _terminate_as_interrupt():
        try:
            lab.build()
            took = lab.wait_converged(lab.agents_started, "waiting for every agent to converge")
        except BaseException:
            lab.down()
            raise
    _times("convergence", took)
    console.print(f"lab {prefix} is up; its files are in {lab.workdir}")


@lab_app.command()
def status(prefix: Prefix = "nplab") -> None:
    """Each VM: the persona the service assigns and what its agent holds."""
    lab = LabRun.attach(_workdir(prefix), console)
    views = lab.views()
    table = Table(title=f"lab {prefix}")
    for column in ("VM", "persona (service)", "agent holds", "result", "error"):
        table.add_column(column)
    for vm in lab.scenario.vms:
        view, record = views[vm.name], lab.agent_record(vm.name)
        table.add_row(
            vm.name,
            f"{view.get('name')} v{view.get('version')}",
            f"{record.get('persona')} v{record.get('version')}",
            str(record.get("result")),
            str(record.get("error") or ""),
        )
    console.print(table)


@lab_app.command()
def probe(prefix: Prefix = "nplab") -> None:
    """Run the probe matrix on a running lab; exit 1 on any mismatch."""
    lab = LabRun.attach(_workdir(prefix), console)
    cells, personas = lab.probe()
    raise typer.Exit(1 if print_matrix(console, f"lab {prefix}", cells, personas) else 0)


@lab_app.command()
def down(prefix: Prefix = "nplab") -> None:
    """Remove a lab: the namespaces, links and processes it recorded, also after a crash."""
    with exclusive(_workdir(prefix)):
        removal = remove_recorded(_workdir(prefix))
    if removal.left:
        console.print(f"[red]could not remove: {', '.join(removal.left)}[/red]")
        raise typer.Exit(1)
    gone = removal.removed
    console.print(f"removed {len(gone)} namespace(s)" if gone else "nothing to remove")


def register(app: typer.Typer) -> None:
    app.add_typer(lab_app, name="lab")
