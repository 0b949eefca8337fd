"""docs/reliability.md shows the request body limits the service enforces, row for row."""

from __future__ import annotations

import re
from pathlib import Path

from netpersona.service.guard import BODY_LIMITS, NO_BODY_LIMIT

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
ROW = re.compile(r"^\| ([A-Z ]+|any) \| (`[^`]+`|any other route or method) \| (\d+) (KiB|MiB) \|")
UNITS = {"KiB": 1024, "MiB": 1024 * 1024}


def test_the_documented_body_limits_are_the_enforced_ones() -> None:
    rows = []
    for line in DOC.read_text().splitlines():
        match = ROW.match(line)
        if match:
            methods, path, size, unit = match.groups()
            rows.append((frozenset(methods.split()), path.strip("`"), int(size) * UNITS[unit]))
    expected = [(entry.methods, entry.path, entry.limit) for entry in BODY_LIMITS]
    expected.append((frozenset({"any"}), "any other route or method", NO_BODY_LIMIT))
    assert rows == expected
