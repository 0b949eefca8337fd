"""``netpersona lab``: the whole system on this machine, proven with real packets.

``lab demo`` is the main job: build, converge, probe, raise the threat level, converge again,
probe again, tear down; exit 1 if any probe disagrees with the spec. ``lab up | status | probe |
down`` do the same steps one at a time. Nothing touches the host's own network namespace, and
teardown removes what the lab's ledger says it created, never what merely shares its prefix.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from netpersona.cli.output import OutputFormat, emit, output_option, print_table
from netpersona.cli.params import PATH, option
from netpersona.errors import UsageError
from netpersona.lab.changes import Phase, changes_between, persona_changes
from netpersona.lab.expect import ProbeKind
from netpersona.lab.report import (
    activity,
    context_text,
    print_changes,
    print_intro,
    print_legend,
    print_phase,
    print_result,
    print_times,
)
from netpersona.lab.run import LabRun, exclusive, holds, remove_recorded
from netpersona.lab.scenario import DEFAULT_SCENARIO, Scenario, broadcast_of, load_scenario

__all__ = ["register"]

RUN_DIR = Path("/run/netpersona-lab")


@click.group("lab", no_args_is_help=True)
def lab_app() -> None:
    """The whole system on this machine, VMs as network namespaces."""


# A log file (stdout not a terminal) gets lines as wide as the widest table, not 80 columns.
console = Console(
    highlight=False, width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 120
)

scenario_option = option(
    "--scenario",
    type=PATH,
    default=DEFAULT_SCENARIO,
    help="Scenario file (see examples/lab/scenario.yaml).",
)
prefix_option = option("--prefix", default="nplab", help="Name prefix of the lab's namespaces.")
replicas_option = option(
    "--replicas",
    type=click.IntRange(min=1, max=8),
    default=1,
    help="Metadata service replicas; above 1 they share a throwaway PostgreSQL cluster made"
    " in the lab's directory, and every agent is given every replica's URL, its nearest"
    " first.",
)


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


def _wrong_expectation(text: str | None, scenario: Scenario) -> set[tuple[str, str, ProbeKind]]:
    """``SRC,DST,PROBE`` -> the probe whose expectation to invert (UsageError naming it)."""
    if text is None:
        return set()
    parts = [p.strip() for p in text.split(",")]
    names = [vm.name for vm in scenario.vms]
    kinds = [k.value for k in ProbeKind]
    if len(parts) != 3:
        raise UsageError(f"--wrong-expectation {text!r}: expected SRC,DST,PROBE")
    src, dst, kind = parts
    for role, name in (("SRC", src), ("DST", dst)):
        if name not in names:
            raise UsageError(
                f"--wrong-expectation {text!r}: {role} {name!r} is not a VM of the scenario "
                f"({', '.join(names)})"
            )
    if src == dst:
        raise UsageError(f"--wrong-expectation {text!r}: SRC and DST are the same VM")
    if kind not in kinds:
        raise UsageError(
            f"--wrong-expectation {text!r}: PROBE {kind!r} is not one of {', '.join(kinds)}"
        )
    return {(src, dst, ProbeKind(kind))}


def _failure(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return str(exc) or type(exc).__name__


@lab_app.command()
@scenario_option
@prefix_option
@option(
    "--wrong-expectation",
    help="SRC,DST,PROBE: invert one expectation, to see a mismatch reported.",
)
@replicas_option
def demo(scenario: Path, prefix: str, wrong_expectation: str | None, replicas: int) -> None:
    """Build a lab, prove every persona with real packets, raise the threat level, prove again."""
    lab = LabRun(load_scenario(scenario), prefix, _workdir(prefix), console, replicas=replicas)
    s = lab.scenario
    flip = _wrong_expectation(wrong_expectation, s)
    phases: list[Phase] = []
    print_intro(console, s, lab.workdir, lab.topo.prefix)
    print_legend(console, s.probes, broadcast_of(s))
    with exclusive(lab.workdir), _terminate_as_interrupt():
        failure: str | None = None
        try:
            lab.build()
            took = lab.wait_converged(lab.agents_started, "waiting for every agent to converge")
            print_times(
                console,
                "convergence: seconds from starting the agents until each holds the persona "
                "the service assigns it",
                took,
            )
            phases.append(lab.probe(flip))
            print_phase(console, f"first matrix ({context_text(phases[0].context)})", phases[0])
            if s.raised_context:
                raised = context_text(s.raised_context)
                acked = lab.set_context(s.raised_context)
                took = lab.wait_converged(acked, f"setting {raised}")
                print_times(
                    console,
                    f"re-convergence after {raised}: seconds from the change until each agent "
                    "holds its new persona",
                    took,
                )
                phases.append(lab.probe(flip))
                second = phases[1]
                print_phase(console, f"second matrix ({context_text(second.context)})", second)
                changes = changes_between(phases[0], second, s.probes, lab.overlay_fields())
                print_changes(
                    console, phases[0], second, persona_changes(phases[0], second), changes
                )
        except BaseException as exc:
            failure = _failure(exc)
            raise
        finally:
            failed = failure is not None or any(p.mismatches for p in phases)
            with activity(console, "tearing the lab down"):
                left = lab.down(keep_logs=failed)
            green = print_result(console, phases, left, lab.logs_kept, failure)
    raise click.exceptions.Exit(0 if green else 1)


@lab_app.command()
@scenario_option
@prefix_option
@replicas_option
def up(scenario: Path, prefix: str, replicas: int) -> None:
    """Build a lab and leave it running (see lab status, lab probe, lab down)."""
    lab = LabRun(load_scenario(scenario), prefix, _workdir(prefix), console, replicas=replicas)
    with exclusive(lab.workdir), _terminate_as_interrupt():
        try:
            lab.build()
            took = lab.wait_converged(lab.agents_started, "waiting for every agent to converge")
        except BaseException:
            lab.down()
            raise
    print_times(console, "convergence: seconds until each agent held its persona", took)
    console.print(f"lab {prefix} is up; its files are in {lab.workdir}")


@lab_app.command()
@prefix_option
@output_option
def status(prefix: str, output: OutputFormat) -> None:
    """Each VM: the persona the service assigns and what its agent holds."""
    lab = LabRun.attach(_workdir(prefix), console)
    views = lab.views()
    rows: list[dict[str, Any]] = []
    for vm in lab.scenario.vms:
        view, record = views[vm.name], lab.agent_record(vm.name)
        rows.append(
            {
                "vm": vm.name,
                "persona": view.get("name"),
                "version": view.get("version"),
                "in_force": holds(record, view["etag"]),
                "agent": record or None,
            }
        )

    def table(out: Console) -> None:
        table = Table(title=f"lab {prefix}")
        for column in ("VM", "persona (service)", "agent holds", "result", "error"):
            table.add_column(column)
        for row in rows:
            record = row["agent"] or {}
            table.add_row(
                row["vm"],
                f"{row['persona']} v{row['version']}",
                f"{record.get('persona')} v{record.get('version')}",
                str(record.get("result")),
                str(record.get("error") or ""),
            )
        print_table(out, table)

    emit(output, rows, table)


@lab_app.command()
@prefix_option
def probe(prefix: str) -> None:
    """Run the probe matrix on a running lab; exit 1 on any mismatch."""
    lab = LabRun.attach(_workdir(prefix), console)
    phase = lab.probe()
    print_legend(console, lab.scenario.probes, broadcast_of(lab.scenario))
    raise click.exceptions.Exit(1 if print_phase(console, f"lab {prefix}", phase) else 0)


@lab_app.command()
@prefix_option
def down(prefix: str) -> None:
    """Remove a lab: the namespaces, links and processes it recorded, also after a crash."""
    with exclusive(_workdir(prefix)):
        removal = remove_recorded(_workdir(prefix))
    if removal.left:
        console.print(f"[red]could not remove: {', '.join(removal.left)}[/red]")
        raise click.exceptions.Exit(1)
    gone = removal.removed
    console.print(f"removed {len(gone)} namespace(s)" if gone else "nothing to remove")


def register(app: click.Group) -> None:
    app.add_command(lab_app)
