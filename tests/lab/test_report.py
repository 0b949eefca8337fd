"""What ``lab demo`` prints, read as an operator reads it: what it proves and against what, a
legend for every symbol, titles in words, the changes between the matrices with the overlay
that caused each, and plain lines (no carriage returns, no escapes) in a log file."""

from __future__ import annotations

import io
import re
from ipaddress import IPv4Address, ip_interface
from pathlib import Path
from typing import Any

from rich.console import Console

from netpersona.lab.changes import Phase, changes_between, persona_changes
from netpersona.lab.expect import Host, ProbeKind
from netpersona.lab.matrix import Cell
from netpersona.lab.report import (
    activity,
    legend_rows,
    print_changes,
    print_intro,
    print_legend,
    print_phase,
    print_result,
    steps,
)
from netpersona.lab.scenario import DEFAULT_SCENARIO, ProbeSettings, load_scenario
from netpersona.model import parse_persona

SETTINGS = ProbeSettings()
BROADCAST = IPv4Address("10.77.0.255")


def console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=120, color_system=None), out


def host(name: str, address: str, persona: str, **fields: Any) -> Host:
    document = {
        "communication_mode": "broadcast",
        "security_profile": "medium",
        "allowed_protocols": ["udp/6000-6010", "icmp", "dns"],
        "priority": 3,
        **fields,
    }
    return Host(name, persona, parse_persona(document), (ip_interface(address),))


def phase(cells: list[Cell], **overlays: tuple[str, ...]) -> Phase:
    hosts = (host("a", "10.77.0.10/24", "web"), host("b", "10.77.0.20/24", "db"))
    return Phase({"threat_level": "low"}, hosts, overlays, tuple(cells))


def render_phase(cells: list[Cell]) -> tuple[int, str]:
    out_console, out = console()
    count = print_phase(out_console, "first matrix (threat_level=low)", phase(cells))
    return count, out.getvalue()


def test_agreement_reports_no_mismatch() -> None:
    cells = [
        Cell("a", "b", ProbeKind.TCP_ALLOWED, True, True),
        Cell("a", "b", ProbeKind.TCP_DENIED, False, False),
        Cell("b", "a", ProbeKind.ICMP, None, None),
    ]
    count, text = render_phase(cells)
    assert count == 0
    assert "2/2 probes agree with the spec (threat_level=low)" in text
    assert "T." in text
    assert "mismatch" not in text


def test_a_wrong_expectation_is_a_listed_mismatch() -> None:
    cells = [
        Cell("a", "b", ProbeKind.TCP_ALLOWED, True, True),
        Cell("a", "b", ProbeKind.ICMP, True, False, ("b:drop_protocol",)),
    ]
    count, text = render_phase(cells)
    assert count == 1
    assert "mismatch a -> b icmp: expected delivered, got dropped (b:drop_protocol)" in text
    assert "1/2 probes agree with the spec" in text


def test_titles_and_persona_tables_are_words_not_python_values() -> None:
    _, text = render_phase([Cell("a", "b", ProbeKind.UDP, False, False)])
    words = " ".join(text.split())  # a title is centred, and wrapped over a narrow table
    assert "first matrix (threat_level=low): unicast, T t U I" in words
    assert "first matrix (threat_level=low): broadcast and multicast, B M m" in words
    for python in ("{", "}", "'", "None", "ProbeKind", "Cell("):
        assert python not in text, python
    assert re.search(r"a\s+web\s+broadcast\s+medium\s+-", text)


def test_the_legend_explains_every_symbol_a_matrix_prints() -> None:
    kinds = list(ProbeKind)
    cells = [Cell("a", "b", kind, True, True) for kind in kinds]
    cells += [Cell("b", "a", kind, False, False) for kind in kinds[1:]]
    cells += [Cell("b", "a", ProbeKind.TCP_ALLOWED, None, None)]
    _, text = render_phase(cells)
    grid_rows, in_grid = [], False
    for line in text.splitlines():
        if "from \\ to" in line:
            in_grid = True
        elif in_grid and re.match(r"\s+[ab]\s", line):
            grid_rows.append(line)
        elif in_grid and not line.strip():
            in_grid = False
    assert len(grid_rows) == 4
    printed = {ch for line in grid_rows for ch in line.split(maxsplit=1)[1] if not ch.isspace()}
    legend = dict(legend_rows(SETTINGS, BROADCAST))
    explained = {s for s in legend if len(s) == 1}
    assert {"T", "t", "U", "I", "B", "M", "m", ".", "-", "·"} <= printed
    assert printed <= explained, printed - explained
    assert "4444" in legend["t"]
    assert "5004" in legend["U"]
    assert "10.77.0.255:6000" in legend["B"]
    assert "239.1.1.1:5004" in legend["M"]
    assert "239.9.9.9:5004" in legend["m"]
    out_console, out = console()
    print_legend(out_console, SETTINGS, BROADCAST)
    assert "the row VM sends, the column VM receives" in out.getvalue()


def test_the_intro_says_what_is_proven_against_which_oracle_and_where_the_files_are() -> None:
    scenario = load_scenario(DEFAULT_SCENARIO)
    out_console, out = console()
    print_intro(out_console, scenario, Path("/run/netpersona-lab/nplab"), "nplab-0a1b2c")
    text = out.getvalue()
    assert "proves with real packets" in text
    assert "netpersona.reachability" in text
    assert "nothing of the compiler or the kernel" in text
    assert "8 VMs, 9 personas" in text
    assert "proven with threat_level=low, then again with threat_level=high" in text
    assert "namespaces nplab-0a1b2c-hv (the hypervisor) and nplab-0a1b2c-<VM>" in text
    assert "files in /run/netpersona-lab/nplab (ledger.jsonl" in text
    # One line per sentence however narrow the console: a log file is read with grep.
    narrow = Console(file=io.StringIO(), width=40, color_system=None)
    print_intro(narrow, scenario, Path("/run/netpersona-lab/nplab"), "nplab-0a1b2c")
    lines = narrow.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert any("netpersona.reachability" in line and "compiler" in line for line in lines)


def discovery_phases() -> tuple[Phase, Phase]:
    """Two discovery VMs in broadcast mode, then in unicast mode by an overlay."""
    hosts = (host("d1", "10.77.0.40/24", "discovery"), host("d2", "10.77.0.41/24", "discovery"))
    cells_before = (
        Cell("d1", "d2", ProbeKind.BROADCAST, True, True),
        Cell("d2", "d1", ProbeKind.BROADCAST, True, True),
        Cell("d1", "d2", ProbeKind.ICMP, True, True),
    )
    before = Phase({"threat_level": "low"}, hosts, {"d1": (), "d2": ()}, cells_before)
    unicast = tuple(
        host(h.name, str(h.interfaces[0]), "discovery", communication_mode="unicast") for h in hosts
    )
    cells_after = (
        Cell("d1", "d2", ProbeKind.BROADCAST, False, False),
        Cell("d2", "d1", ProbeKind.BROADCAST, False, False),
        Cell("d1", "d2", ProbeKind.ICMP, True, True),
    )
    applied = ("no-broadcast", "audit")
    after = Phase({"threat_level": "high"}, unicast, {"d1": applied, "d2": applied}, cells_after)
    return before, after


def test_each_change_is_named_with_the_overlay_that_set_the_deciding_field() -> None:
    before, after = discovery_phases()
    fields = {"no-broadcast": frozenset({"communication_mode"}), "audit": frozenset({"priority"})}
    changes = changes_between(before, after, SETTINGS, fields)
    assert [(c.src, c.dst, c.kind, c.now_delivered) for c in changes] == [
        ("d1", "d2", ProbeKind.BROADCAST, False),
        ("d2", "d1", ProbeKind.BROADCAST, False),
    ]
    assert all(c.overlays == ("no-broadcast",) for c in changes)
    assert changes[0].on_vm == "d1"
    assert changes[1].on_vm == "d2"
    out_console, out = console()
    print_changes(out_console, before, after, persona_changes(before, after), changes)
    text = out.getvalue()
    assert "What changed from the first matrix (threat_level=low) to the second" in text
    assert "d1         discovery took no-broadcast, audit: " in text
    assert "communication_mode broadcast -> unicast" in text
    assert "probes: 2 changed outcome (2 now dropped, 0 now delivered)" in text
    assert "overlay no-broadcast on d1, d2: 2 probe(s)" in text
    assert "d1 -> d2 B (udp/6000 broadcast): now dropped; dropped by d1 (discovery) out" in text
    assert "drop_broadcast" in text


def test_a_change_no_overlay_explains_is_said_to_be_one() -> None:
    before, after = discovery_phases()
    after = Phase(after.context, after.hosts, {}, after.cells)
    changes = changes_between(before, after, SETTINGS, {})
    assert all(c.overlays == () for c in changes)
    out_console, out = console()
    print_changes(out_console, before, after, persona_changes(before, after), changes)
    assert "no overlay (the personas themselves changed): 2 probe(s)" in out.getvalue()


def test_the_result_is_green_only_when_every_probe_agreed_and_the_lab_is_gone() -> None:
    before, after = discovery_phases()
    out_console, out = console()
    assert print_result(out_console, [before, after], [], None)
    text = out.getvalue()
    assert "PASS: every probe agrees with the spec (3/3 with threat_level=low, 3/3 with " in text
    assert "lab removed" in text
    assert "logs" not in text

    wrong = Phase(
        after.context, after.hosts, after.overlays, (Cell("d1", "d2", ProbeKind.UDP, True, False),)
    )
    out_console, out = console()
    kept = Path("/run/netpersona-lab/nplab-abc123-logs")
    assert not print_result(out_console, [before, wrong], [], kept)
    text = out.getvalue()
    assert "FAIL: 1 probe(s) disagree with the spec" in text
    assert f"the service's and agents' logs are kept in {kept}" in text

    out_console, out = console()
    assert not print_result(out_console, [], ["nplab-abc123-hv"], kept, "interrupted")
    text = out.getvalue()
    assert "FAIL: stopped: interrupted; the lab could not be removed completely" in text
    assert "left behind: nplab-abc123-hv" in text


def test_progress_in_a_log_file_is_plain_lines() -> None:
    out_console, out = console()
    assert not out_console.is_terminal
    with steps(out_console, "building the lab", 2) as step:
        step("hypervisor and bridges")
        step("VM web1")
    with activity(out_console, "probing"):
        pass
    text = out.getvalue()
    assert "\r" not in text
    assert "\x1b" not in text
    lines = text.splitlines()
    assert lines[:3] == ["building the lab:", "  [1/2] hypervisor and bridges", "  [2/2] VM web1"]
    assert lines[3] == "probing ..."
    assert re.fullmatch(r"probing: done in \d+\.\d s", lines[4])
