"""The JSON shapes docs/cli.md gives each command, for the tests that hold the code to them."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["DOC", "documented_json"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
ROW = re.compile(r"^\| `netpersona ([a-z -]+)[^`]*` \| (list of|object) \| ((?:`[a-z_]+`,? ?)+) \|")


def documented_json() -> dict[str, tuple[str, list[str]]]:
    """Command (``admin instances``, ``apply --check``, ...) -> ("list of" or "object", keys)."""
    rows = {}
    for line in DOC.read_text().splitlines():
        match = ROW.match(line)
        if match:
            command, kind, keys = match.groups()
            rows[command.strip()] = (kind, re.findall(r"`([a-z_]+)`", keys))
    return rows
