"""bench/e2e: change-to-enforced latency through the whole system (prints JSON).

Builds a lab (the metadata service in a hypervisor namespace, VMS agents in VM namespaces),
pins one persona to every VM, then changes it ROUNDS times; each change allows a new TCP port,
and the time from the admin API's acknowledgement to the moment a SYN to that port is answered
by each VM is one sample. Run as root from the repository root:

    .venv/bin/python bench/e2e/run.py [--vms 3] [--rounds 50] [--trace]

With ``--trace`` the agents log at debug level and the output also lays out what each sample
was made of (stages.py): the spread of each stage and the slowest samples, stage by stage.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from stages import summarize  # bench/e2e/stages.py (the script's directory is on the path)

from netpersona.lab.fleet import METADATA_URL
from netpersona.lab.fleet import LabProcesses as Fleet
from netpersona.lab.topology import topology

DRIVER = Path(__file__).with_name("driver.py")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its children it has waited for (its nft, ip, ...)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--trace", action="store_true", help="lay out each sample's stages")
    parser.add_argument("--keep-logs", type=Path, help="copy the lab's logs into this directory")
    args = parser.parse_args()
    log_level = ["--log-level", "debug", "--log-format", "json"] if args.trace else []
    traced: dict[str, object] | None = None
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as work, topology(f"npbe{os.getpid() % 100000}") as topo:
        fleet = Fleet(topo, Path(work))
        try:
            fleet.start_service()
            persona = Path(work) / "bench.yaml"
            persona.write_text(
                "network_persona: {communication_mode: unicast, security_profile: medium,"
                " allowed_protocols: [icmp], priority: 3}\n"
            )
            fleet.admin("apply", str(persona), "--name", "bench")
            addresses = []
            for index in range(args.vms):
                name, address = f"vm{index}", f"10.77.0.{10 + index}"
                topo.add_vm(name, f"{address}/24")
                fleet.admin("add-instance", name, "--address", address)
                fleet.admin("pin", name, "bench")
                fleet.start_agent(
                    name, "--drift-interval", "3600", "--log-level", "warning", *log_level
                )
                addresses.append(address)
            time.sleep(3)  # every agent has applied the first version
            token = (fleet.data_dir / "admin.token").read_text().strip()
            assert topo.hypervisor is not None
            assert fleet.service is not None
            pids = {"service": fleet.service.pid, **{n: p.pid for n, p in fleet.agents.items()}}
            cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            done = topo.hypervisor.run(
                [
                    sys.executable,
                    str(DRIVER),
                    METADATA_URL,
                    token,
                    "bench",
                    str(args.rounds),
                    *addresses,
                ],
                timeout=args.rounds * 40,
            )
            result = json.loads(done.stdout)
            cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
            if args.trace:
                vms = {
                    f"vm{i}": (a, fleet.log_path(f"agent-vm{i}")) for i, a in enumerate(addresses)
                }
                traced = summarize(result["rounds"], vms)
        finally:
            fleet.stop_all()
            if args.keep_logs is not None:
                shutil.copytree(fleet.log_path("x").parent, args.keep_logs, dirs_exist_ok=True)
    samples = [s * 1000 for s in result["samples"]]
    print(
        json.dumps(
            {
                "benchmark": "e2e change-to-enforced",
                "machine": {
                    "cpus": os.cpu_count(),
                    "kernel": platform.release(),
                    "python": platform.python_version(),
                },
                "vms": args.vms,
                "changes": args.rounds,
                "samples": len(samples),
                "timeouts": result["timeouts"],
                "latency_ms": {
                    "p50": round(percentile(samples, 0.50), 1),
                    "p90": round(percentile(samples, 0.90), 1),
                    "p99": round(percentile(samples, 0.99), 1),
                    "max": round(max(samples), 1),
                    "mean": round(statistics.fmean(samples), 1),
                },
                "driver_cpu_share": round(result["cpu_share"], 3),
                # CPU per change, the steadier figure on a loaded machine.
                "cpu_ms_per_change": {
                    "service": round(cpu["service"] * 1000 / args.rounds, 1),
                    "agent_mean": round(
                        sum(v for k, v in cpu.items() if k != "service")
                        * 1000
                        / args.rounds
                        / args.vms,
                        1,
                    ),
                },
                "write_ms_p50": round(
                    statistics.median(r["write_s"] * 1000 for r in result["rounds"]), 1
                ),
                "loadavg_before": load_before,
                "loadavg_after": os.getloadavg(),
                **({"trace": traced} if traced is not None else {}),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
