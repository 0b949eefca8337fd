"""The reachability engine against real packets: the default lab, every probe, cell for cell.

A lab of its own (namespaces named with this test's own prefix, removed however the test
ends) is built and converged; then every probe of the lab's matrix is sent with real packets,
and for each the running service's ``GET /v1/admin/reachability`` is asked the same question.
The two must agree everywhere, before and after the threat level is raised.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlencode

import pytest
from rich.console import Console

from netpersona.lab.expect import Probe, ProbeKind
from netpersona.lab.matrix import GROUP_KINDS, Cell, probes_for
from netpersona.lab.run import LabRun
from netpersona.lab.scenario import load_scenario
from netpersona.system.netns import list_netns

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

SCENARIO = Path(__file__).resolve().parents[2] / "examples" / "lab" / "scenario.yaml"


def question(src: str, dst: str, probe: Probe) -> dict[str, str]:
    """The reachability API's spelling of a lab probe."""
    proto = probe.l4.value if probe.port is None else f"{probe.l4.value}/{probe.port}"
    params = {"from": src, "to": dst, "proto": proto}
    if probe.kind is ProbeKind.BROADCAST:
        params["via"] = "broadcast"
    elif probe.kind in GROUP_KINDS:
        params.update(via="multicast", group=str(probe.group))
    return params


def disagreements(lab: LabRun, cells: list[Cell]) -> list[str]:
    hosts = {h.name: h for h in lab.hosts()}
    found = []
    for cell in cells:
        if cell.actual is None:
            continue
        probe = probes_for(hosts[cell.src], hosts[cell.dst], lab.scenario.probes)[cell.kind]
        assert probe is not None
        path = "/v1/admin/reachability?" + urlencode(question(cell.src, cell.dst, probe))
        engine = lab.admin.request("GET", path)["reachable"]
        if engine != cell.actual:
            found.append(
                f"{cell.src} -> {cell.dst} {cell.kind}: engine {engine}, packets {cell.actual}"
            )
    return found


def test_the_engine_answers_every_probe_as_the_packets_do(tmp_path: Path) -> None:
    prefix = f"nprc{os.getpid() % 100000}"
    scenario = load_scenario(SCENARIO)
    lab = LabRun(scenario, prefix, tmp_path / "lab", Console(quiet=True))
    try:
        lab.build()
        lab.wait_converged(lab.agents_started, "converging")
        cells = list(lab.probe().cells)
        assert sum(c.actual is not None for c in cells) > 300
        assert disagreements(lab, cells) == []
        lab.wait_converged(lab.set_context(scenario.raised_context), "raising")
        raised = list(lab.probe().cells)
        assert disagreements(lab, raised) == []
        changed = {(c.src, c.dst, c.kind) for c in raised} - {(c.src, c.dst, c.kind) for c in cells}
        assert changed == set()  # the same probes, some of them answered differently
        assert [c.actual for c in cells] != [c.actual for c in raised]
    finally:
        lab.down()
    assert not [name for name in list_netns() if name.startswith(f"{prefix}-")]
