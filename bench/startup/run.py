"""Start-up benchmark; prints one JSON document.

Whole-process figures, each the median of ``--rounds`` runs, wall and CPU (user + system of the
child, from wait4(2)), beside ``python -c pass`` measured in the same run:

* ``help``: ``netpersona --help``;
* ``validate``: ``netpersona validate`` of a shipped example;
* ``agent_ready``: an agent started in a throwaway namespace against a metadata service that
  answers at once (tests/agent/hostile_server.py in its good mode), from exec to its first
  converged pass: the ``READY=1`` it sends to ``$NOTIFY_SOCKET`` (a socket of this script's).
  CPU is the agent's user + system time at that moment (/proc/PID/stat);
* ``agent_idle_rss_kb``: the agent's VmRSS (and VmHWM) a few seconds after READY, idle.

``bytecode`` says whether the installed modules have their compiled ``.pyc`` beside them (an
installed package does: the .deb's postinst runs compileall). A development venv has none
when ``PYTHONDONTWRITEBYTECODE`` is set: then every run compiles each of them from source,
which costs CPU and leaves the compiler's memory in the agent's RSS. Both cases are worth a
figure: ``python -m compileall -q .venv/lib src`` gives the first, deleting those
``__pycache__`` directories the second.

    .venv/bin/python bench/startup/run.py
    .venv/bin/python bench/startup/run.py --rounds 3
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from netpersona.lab.fleet import netpersona_argv
from netpersona.testing.netns import Netns, netns

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "tests" / "agent" / "hostile_server.py"
EXAMPLE = ROOT / "src" / "netpersona" / "examples" / "web-frontend.yaml"
PORT = 8169
TICKS = os.sysconf("SC_CLK_TCK")
PERSONA = {
    "assigned": True,
    "name": "web",
    "version": 1,
    "overlays": [],
    "digest": "d1",
    "network_persona": {
        "communication_mode": "unicast",
        "security_profile": "medium",
        "allowed_protocols": ["tcp/8080", "icmp"],
        "priority": 3,
    },
}


def run_once(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``argv`` (its output discarded; it must succeed)."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        assert child.stderr is not None
        raise SystemExit(f"{argv} failed ({child.returncode}): {child.stderr.read().decode()}")
    return wall, usage.ru_utime + usage.ru_stime


def measure(argv: list[str], rounds: int) -> dict[str, float]:
    runs = [run_once(argv) for _ in range(rounds)]
    return {
        "wall_s": round(statistics.median(w for w, _ in runs), 4),
        "cpu_s": round(statistics.median(c for _, c in runs), 4),
        "wall_min_s": round(min(w for w, _ in runs), 4),
    }


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _status_kb(pid: int) -> dict[str, int]:
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def _uplink(ns: Netns) -> None:
    ns.run(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"])
    ns.run(["ip", "addr", "add", "10.77.0.11/24", "dev", "eth0"])
    ns.run(["ip", "link", "set", "eth0p", "up"])
    ns.run(["ip", "link", "set", "eth0", "up"])


def _wait_listening(ns: Netns, deadline: float) -> None:
    while time.monotonic() < deadline:
        probe = ns.run(["ss", "-Hltn", f"sport = :{PORT}"], check=False)
        if probe.stdout.strip():
            return
        time.sleep(0.05)
    raise SystemExit("the metadata server did not start")


def agent_round(
    idle_s: float, env_extra: dict[str, str] | None = None, stderr: Path | None = None
) -> dict[str, Any]:
    """One agent from exec to READY, in a fresh namespace with a fresh state directory
    (``env_extra`` added to its environment, its stderr written to ``stderr``)."""
    with tempfile.TemporaryDirectory() as tmp, netns("npstart") as ns:
        work = Path(tmp)
        control = work / "control"
        control.mkdir()
        (control / "persona.json").write_text(json.dumps(PERSONA))
        (control / "mode").write_text("good")
        _uplink(ns)
        server = ns.popen([sys.executable, str(SERVER), str(PORT), str(control)])
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(work / "notify"))
        notify.settimeout(60)
        argv = [*netpersona_argv(), "agent", "--metadata-url", f"http://127.0.0.1:{PORT}"]
        argv += ["--state-dir", str(work / "state"), "--no-gossip", "--drift-interval", "3600"]
        env = {**os.environ, "NOTIFY_SOCKET": str(work / "notify"), **(env_extra or {})}
        err = subprocess.DEVNULL if stderr is None else stderr.open("w")
        agent: subprocess.Popen[str] | None = None
        try:
            _wait_listening(ns, time.monotonic() + 30)
            started = time.perf_counter()
            agent = ns.popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err)
            while True:
                message = notify.recv(4096).decode()
                if "READY=1" in message:
                    break
            ready_s = time.perf_counter() - started
            cpu_s = _cpu_s(agent.pid)
            time.sleep(idle_s)
            memory = _status_kb(agent.pid)
            return {"wall_s": ready_s, "cpu_s": cpu_s, **memory}
        finally:
            notify.close()
            if stderr is not None:
                err.close()  # type: ignore[union-attr]
            for process in (agent, server):
                if process is not None:
                    process.kill()
                    process.wait(10)


def bytecode() -> str:
    """``cached`` when the modules every command loads have a ``.pyc``, else ``partly``/``none``."""
    found = []
    for name in ("netpersona.cli.main", "click.core", "httpx._client", "yaml.parser"):
        spec = importlib.util.find_spec(name)
        assert spec is not None
        assert spec.origin is not None
        found.append(Path(importlib.util.cache_from_source(spec.origin)).exists())
    return "cached" if all(found) else "partly" if any(found) else "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="runs per figure (median kept)")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds idle before RSS")
    args = parser.parse_args()
    load_before = os.getloadavg()
    cli = netpersona_argv()
    bare = measure([sys.executable, "-c", "pass"], args.rounds)
    result: dict[str, Any] = {
        "python": sys.version.split()[0],
        "bytecode": bytecode(),
        "python_c_pass": bare,
        "help": measure([*cli, "--help"], args.rounds),
        "validate": measure([*cli, "validate", str(EXAMPLE)], args.rounds),
    }
    agents = [agent_round(args.idle) for _ in range(args.rounds)]
    result["agent_ready"] = {
        "wall_s": round(statistics.median(a["wall_s"] for a in agents), 4),
        "cpu_s": round(statistics.median(a["cpu_s"] for a in agents), 4),
    }
    result["agent_idle_rss_kb"] = int(statistics.median(a["VmRSS"] for a in agents))
    result["agent_peak_rss_kb"] = int(statistics.median(a["VmHWM"] for a in agents))
    for name in ("help", "validate", "agent_ready"):
        result[name]["over_python_wall_s"] = round(result[name]["wall_s"] - bare["wall_s"], 4)
        result[name]["over_python_cpu_s"] = round(result[name]["cpu_s"] - bare["cpu_s"], 4)
    result["loadavg_before"] = load_before
    result["loadavg_after"] = os.getloadavg()
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
