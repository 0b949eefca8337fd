"""The matrix output: agreement in green, a mismatch named with the counter that fired."""

from __future__ import annotations

import io

from rich.console import Console

from netpersona.lab.expect import ProbeKind
from netpersona.lab.matrix import Cell
from netpersona.lab.report import print_matrix


def render(cells: list[Cell]) -> tuple[int, str]:
    out = io.StringIO()
    console = Console(file=out, width=120, color_system=None)
    count = print_matrix(console, "test", cells, {"a": "web", "b": "db"})
    return count, out.getvalue()


def test_agreement_reports_no_mismatch() -> None:
    cells = [
        Cell("a", "b", ProbeKind.TCP_ALLOWED, True, True),
        Cell("a", "b", ProbeKind.TCP_DENIED, False, False),
        Cell("b", "a", ProbeKind.ICMP, None, None),
    ]
    count, text = render(cells)
    assert count == 0
    assert "2/2 probes as expected" in text
    assert "T." in text


def test_a_wrong_expectation_is_a_listed_mismatch() -> None:
    cells = [
        Cell("a", "b", ProbeKind.TCP_ALLOWED, True, True),
        Cell("a", "b", ProbeKind.ICMP, True, False, ("b:drop_protocol",)),
    ]
    count, text = render(cells)
    assert count == 1
    assert "mismatch a -> b icmp: expected delivered, got dropped (b:drop_protocol)" in text
    assert "1/2 probes as expected" in text
