"""Dependencies point one way: the pure core imports nothing that does I/O (STYLE.md).

Checked on the source itself (every import statement, including those inside functions), and
by importing each pure module in a fresh interpreter and listing what it loaded. Two more
directions: the agent never loads the web framework, and only tests (and the test fakes
themselves) import :mod:`netpersona.testing`.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "netpersona"
PURE = ["model", "compiler", "facts.py", "errors.py", "nftables", "policy", "records"]
PURE += ["reachability"]
# Propagation: everything but key files (certs/keyfiles.py) and the UDP transport.
PURE += [f"certs/{m}.py" for m in ("__init__", "certificate", "issue", "keys", "verify")]
PURE += [
    f"gossip/{m}.py"
    for m in (
        *("__init__", "config", "wire", "store", "limits", "node", "simulator"),
        *("antientropy", "rumors", "wants", "targets", "step"),
    )
]
# The only project modules the pure core may import.
PURE_PREFIXES = (
    "netpersona.model",
    "netpersona.compiler",
    "netpersona.facts",
    "netpersona.errors",
    "netpersona.nftables",
    "netpersona.policy",
    "netpersona.records",
    "netpersona.reachability",
    *(f"netpersona.certs.{m}" for m in ("certificate", "issue", "keys", "verify")),
    *(
        f"netpersona.gossip.{m}"
        for m in (
            *("config", "wire", "store", "limits", "node"),
            *("antientropy", "rumors", "wants", "targets", "step"),
        )
    ),
)
# Packages the pure core must never reach (the allow-list above already keeps them out; this
# names them, so a failure says which direction was broken).
IMPURE_PACKAGES = (
    "agent",
    "service",
    "store",
    "cli",
    "lab",
    "dataplane",
    "system",
    "testing",
    "probe",
    "admin_client",
)
WEB_FRAMEWORK = {"fastapi", "starlette", "uvicorn"}
# The signing libraries the certificates use, as they import them.
SIGNING_LIBRARIES = (
    "joserfc.jws",
    "joserfc.jwk",
    "joserfc.errors",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
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


def test_every_pure_package_is_checked() -> None:
    checked = {p.relative_to(SRC).parts[0] for p in pure_files()}
    for package in ("model", "compiler", "nftables", "policy", "certs", "gossip"):
        assert package in checked
        assert (SRC / package).is_dir()
    assert {"facts.py", "errors.py"} <= checked
    # Everything in certs/ and gossip/ but key files and the UDP transport is pure.
    impure = {"certs/keyfiles.py", "gossip/transport.py"}
    for package in ("certs", "gossip"):
        for path in (SRC / package).glob("*.py"):
            assert path in pure_files() or str(path.relative_to(SRC)) in impure, path


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
            second = name.split(".")[1] if "." in name else ""
            assert second not in IMPURE_PACKAGES, f"{path.name} imports {name}, which does I/O"
            assert name.startswith(PURE_PREFIXES), (
                f"{path.name} imports {name}, outside the pure core"
            )


def _loaded_by(*modules: str) -> list[str]:
    """The modules a fresh interpreter loads to import ``modules``."""
    code = (
        "import sys, json, importlib; before = set(sys.modules);"
        f"[importlib.import_module(m) for m in {list(modules)!r}];"
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded: list[str] = json.loads(done.stdout)
    return loaded


@pytest.mark.subprocess
def test_importing_the_core_loads_no_io_module() -> None:
    core = ["netpersona.model", "netpersona.compiler", "netpersona.facts", "netpersona.errors"]
    core += ["netpersona.model.schema", "netpersona.nftables", "netpersona.policy"]
    core += [f"netpersona.certs.{m}" for m in ("certificate", "issue", "keys", "verify")]
    core += [f"netpersona.gossip.{m}" for m in ("config", "wire", "store", "limits", "node")]
    # The signing libraries load socket, urllib and random themselves (cryptography's x509
    # through email.utils); only what the core loads beyond them counts.
    loaded = set(_loaded_by(*core)) - set(_loaded_by(*SIGNING_LIBRARIES))
    offenders = {
        m
        for m in loaded
        if m.split(".")[0] in IO_MODULES - {"os", "io", "time", "random", "pathlib"}
        or (m.startswith("netpersona.") and m.split(".")[1] in IMPURE_PACKAGES)
    }
    # yaml, json and ipaddress are fine; anything networked or process-spawning is not.
    assert not offenders, offenders


def _python_files(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*.py"))


@pytest.mark.parametrize(
    "path", _python_files(SRC / "agent"), ids=lambda p: str(p.relative_to(SRC))
)
def test_the_agent_imports_no_web_framework(path: Path) -> None:
    for name in imported_names(path):
        assert name.split(".")[0] not in WEB_FRAMEWORK, f"{path.name} imports {name}"


@pytest.mark.subprocess
def test_importing_the_agent_loads_no_web_framework() -> None:
    loaded = _loaded_by("netpersona.agent", "netpersona.agent.runner", "netpersona.agent.client")
    assert not {m for m in loaded if m.split(".")[0] in WEB_FRAMEWORK}


# Only tests import the fakes; bench/ measures in the same throwaway namespaces and with the
# same fake certificates, so it may too.
OUTSIDE_TESTS = [p for p in _python_files(SRC) if p.relative_to(SRC).parts[0] != "testing"]
OUTSIDE_TESTS += _python_files(SRC.parents[1] / "scripts")


@pytest.mark.parametrize("path", OUTSIDE_TESTS, ids=lambda p: str(p.relative_to(SRC.parents[1])))
def test_only_tests_import_the_test_fakes(path: Path) -> None:
    for name in imported_names(path):
        where = path.relative_to(SRC.parents[1])
        assert name.split(".")[:2] != ["netpersona", "testing"], (
            f"{where} imports {name}; production code takes what it needs from netpersona.system"
        )
