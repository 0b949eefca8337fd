"""What each package the idle agent loaded costs it in resident memory; prints one JSON document.

1. Runs one agent as ``run.py`` does (a throwaway namespace, a metadata server that answers at
   once, ``--no-gossip``) with ``PYTHONPROFILEIMPORTTIME=1``, and reads from its stderr every
   module it imported until it was idle, in order.
2. In a fresh interpreter, imports those modules' top-level packages one after the other, in
   the agent's order and the agent's way (structlog and httpx without their console extras, as
   ``netpersona.cli.main.load_commands`` imports them; pyroute2's codecs alone, as
   ``netpersona.dataplane.netlink`` does), and prints VmRSS after each: what the package and
   everything it pulled in first cost.

    .venv/bin/python bench/startup/agent_imports.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from run import agent_round

# Imported in the child, one package at a time; prints [package, VmRSS kB, modules] lines.
_MEASURE = """
import importlib, json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
print(json.dumps(["(python)", rss(), len(sys.modules)]))
import netpersona.cli.main as cli
print(json.dumps(["netpersona.cli.main (click)", rss(), len(sys.modules)]))
cli._import_without_unused_extras()
print(json.dumps(["httpx, httpcore, structlog (no rich, pygments, trio)", rss(), len(sys.modules)]))
for name in json.loads(sys.argv[1]):
    if name in sys.modules or name in cli._UNUSED_EXTRAS:  # loaded, or hidden from the agent
        continue
    try:
        if name == "pyroute2":  # as the agent does: the codecs only, not the package
            importlib.import_module("netpersona.dataplane.netlink")._codecs()
        else:
            importlib.import_module(name)
    except Exception as exc:
        print(json.dumps([name + " (failed: " + type(exc).__name__ + ")", rss(), len(sys.modules)]))
        continue
    print(json.dumps([name, rss(), len(sys.modules)]))
"""


def imported_modules(stderr: str) -> list[str]:
    """The modules of a ``-X importtime`` log, in the order their import finished."""
    names = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.append(name)
    return names


def packages_in_order(modules: list[str]) -> list[str]:
    """Each top-level package once (netpersona by module), in the order first seen."""
    seen: dict[str, None] = {}
    for name in modules:
        key = name if name.startswith("netpersona.") else name.split(".")[0]
        seen.setdefault(key, None)
    return list(seen)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "agent.stderr"
        agent = agent_round(3.0, {"PYTHONPROFILEIMPORTTIME": "1"}, log)
        modules = imported_modules(log.read_text())
    order = packages_in_order(modules)
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, json.dumps(order)],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    steps = []
    previous = rows[0][1]
    for name, rss, count in rows:
        steps.append({"import": name, "rss_kb": rss, "delta_kb": rss - previous, "modules": count})
        previous = rss
    print(
        json.dumps(
            {
                "agent_idle_rss_kb": agent["VmRSS"],
                "agent_modules": len(modules),
                "loadavg": os.getloadavg(),
                "biggest": sorted(steps, key=lambda s: -s["delta_kb"])[:15],
                "steps": steps,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
