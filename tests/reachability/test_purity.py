"""The reachability engine is pure: it imports nothing that does I/O and nothing outside the
core (the model, the policy engine, the errors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_import_direction import IO_MODULES, imported_names

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "netpersona" / "reachability"
ALLOWED = ("netpersona.model", "netpersona.errors", "netpersona.policy", "netpersona.reachability")


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_reachability_module_imports_no_io(path: Path) -> None:
    for name in imported_names(path):
        top = name.split(".")[0]
        assert top not in IO_MODULES, f"{path.name} imports {name}, which does I/O"
        if top == "netpersona":
            assert name.startswith(ALLOWED), f"{path.name} imports {name}, outside the core"
