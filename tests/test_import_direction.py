"""Dependencies point one way: the pure core imports nothing that does I/O (STYLE.md).

Checked on the source itself (every import statement, including those inside functions), and
by importing each pure module in a fresh interpreter and listing what it loaded.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "netpersona"
PURE = ["model", "compiler", "facts.py", "errors.py", "nftables", "records"]
# Propagation: everything but key files (certs/keyfiles.py) and the UDP transport.
PURE += [f"certs/{m}.py" for m in ("__init__", "certificate", "issue", "keys", "verify")]
PURE += [
    f"gossip/{m}.py" for m in ("__init__", "config", "wire", "store", "limits", "node", "simulator")
]
# The only project modules the pure core may import.
PURE_PREFIXES = (
    "netpersona.model",
    "netpersona.compiler",
    "netpersona.facts",
    "netpersona.errors",
    "netpersona.nftables",
    "netpersona.records",
    *(f"netpersona.certs.{m}" for m in ("certificate", "issue", "keys", "verify")),
    *(f"netpersona.gossip.{m}" for m in ("config", "wire", "store", "limits", "node")),
)
# Standard-library and third-party modules that do I/O, start processes or talk to the network.
IO_MODULES = {
    "subprocess",
    "socket",
    "asyncio",
    "os",
    "shutil",
    "pathlib",
    "urllib",
    "http",
    "httpx",
    "fastapi",
    "starlette",
    "uvicorn",
    "pyroute2",
    "sqlite3",
    "time",
    "random",
    "threading",
    "multiprocessing",
    "tempfile",
    "io",
}


def pure_files() -> list[Path]:
    files: list[Path] = []
    for entry in PURE:
        path = SRC / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", pure_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_pure_module_imports(path: Path) -> None:
    for name in imported_names(path):
        top = name.split(".")[0]
        assert top not in IO_MODULES, f"{path.name} imports {name}, which does I/O"
        if top == "netpersona":
            assert name.startswith(PURE_PREFIXES), (
                f"{path.name} imports {name}, outside the pure core"
            )


@pytest.mark.subprocess
def test_importing_the_core_loads_no_io_module() -> None:
    code = (
        "import sys, json; before = set(sys.modules);"
        "import netpersona.model, netpersona.compiler, netpersona.facts, netpersona.model.schema;"
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )
    offenders = {
        m
        for m in loaded
        if m.split(".")[0] in IO_MODULES - {"os", "io", "time", "random", "pathlib"}
    }
    # yaml, json and ipaddress are fine; anything networked or process-spawning is not.
    assert not offenders, offenders
