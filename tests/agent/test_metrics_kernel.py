"""The agent's metrics from real processes: two agents in VM namespaces with the service in the
hypervisor's, each agent serving ``--metrics-listen`` on its own loopback and writing
``--metrics-textfile``. What a Prometheus would scrape is checked against what happened (a
packet the persona drops, a persona applied, certificates gossiped) and against promtool's
rules, and so is the service's ``/metrics``."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from netpersona.lab.fleet import METADATA_URL
from netpersona.lab.fleet import LabProcesses as Fleet
from netpersona.lab.topology import topology
from tests.promtool import check_metrics

pytestmark = pytest.mark.kernel

ADDRESSES = {"vm1": "10.77.0.11", "vm2": "10.77.0.12"}
# tcp/7777 is not allowed: a connection attempt to it is dropped and counted.
PERSONA = """network_persona:
  communication_mode: unicast
  security_profile: medium
  allowed_protocols: [tcp/8080, icmp]
  priority: 3
  peers:
    - labels: {lab: metrics}
"""
LISTEN = "127.0.0.1:9477"
FETCH = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=20) as answer:
    sys.stdout.write(answer.read().decode())
"""
CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    pass
"""

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with topology(f"npmt{os.getpid() % 100000}") as topo:
        for vm, address in ADDRESSES.items():
            topo.add_vm(vm, f"{address}/24")
        fleet = Fleet(topo, tmp_path / "fleet")
        try:
            fleet.start_service()
            path = tmp_path / "web.yaml"
            path.write_text(PERSONA)
            fleet.admin("apply", str(path), "--name", "web")
            for vm, address in ADDRESSES.items():
                fleet.admin("add-instance", vm, "--address", address, "--label", "lab=metrics")
                fleet.admin("pin", vm, "web")
            yield fleet
        finally:
            fleet.stop_all()


def fetch(fleet: Fleet, vm: str, url: str) -> str:
    return fleet.topo.vms[vm].run([sys.executable, "-c", FETCH, url]).stdout


def parse(text: str) -> Series:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(fleet: Fleet, vm: str) -> Series:
    done = fleet.topo.vms[vm].run(
        [sys.executable, "-c", FETCH, f"http://{LISTEN}/metrics"], check=False
    )
    return parse(done.stdout) if done.returncode == 0 else {}


def total(series: Series, name: str) -> float:
    return sum(v for (n, _), v in series.items() if n == name)


def test_agent_and_service_metrics_say_what_happened(fleet: Fleet, tmp_path: Path) -> None:
    textfile = tmp_path / "vm1.prom"
    for vm in ADDRESSES:
        argv = ["--drift-interval", "3600", "--metrics-listen", LISTEN, "--log-format", "json"]
        if vm == "vm1":
            argv += ["--metrics-textfile", str(textfile), "--metrics-interval", "1"]
        fleet.start_agent(vm, *argv)

    def applied() -> bool:
        got = scrape(fleet, "vm1")
        return got.get(("netpersona_agent_persona_version", ()), 0) == 1

    fleet.wait_for(applied, 60, "vm1's metrics to say web v1 is in force")
    # A connection to a port the persona does not allow: dropped, and counted by the kernel.
    assert fleet.topo.hypervisor is not None
    before = total(scrape(fleet, "vm1"), "netpersona_agent_nft_dropped_packets_total")
    fleet.topo.hypervisor.run([sys.executable, "-c", CONNECT, ADDRESSES["vm1"], "7777"])
    fleet.wait_for(
        lambda: total(scrape(fleet, "vm1"), "netpersona_agent_nft_dropped_packets_total") > before,
        30,
        "the drop to show in the metrics",
    )
    # The two agents learn each other's certificates over the control channel.
    fleet.wait_for(
        lambda: (
            scrape(fleet, "vm1").get(("netpersona_agent_gossip_certificates_accepted_total", ()), 0)
            >= 1
        ),
        60,
        "vm1 to accept vm2's certificate",
    )

    text = fetch(fleet, "vm1", f"http://{LISTEN}/metrics")
    assert check_metrics(text) == []
    got = parse(text)
    assert got[("netpersona_agent_passes_total", (("result", "applied"),))] >= 1
    assert got[("netpersona_agent_converged", ())] == 1
    assert got[("netpersona_agent_watch_state", (("state", "ok"), ("view", "persona")))] == 1
    assert got[("netpersona_agent_service_state", (("state", "reachable"),))] == 1
    assert got[("netpersona_agent_gossip_state", (("state", "listening"),))] == 1
    assert got[("netpersona_agent_gossip_peers", ())] >= 1
    assert got[("netpersona_agent_gossip_bytes_total", (("direction", "sent"),))] > 0
    assert got[("netpersona_agent_gossip_bytes_total", (("direction", "received"),))] > 0
    applies = ("netpersona_agent_kernel_change_duration_seconds_count",)
    assert got[(*applies, (("operation", "apply"), ("outcome", "ok")))] >= 1
    assert got[("process_resident_memory_bytes", ())] > 0

    # The textfile: the same metrics (without process_*, node_exporter has its own), whole.
    fleet.wait_for(
        lambda: (
            textfile.exists() and "netpersona_agent_persona_version 1.0" in textfile.read_text()
        ),
        30,
        "the textfile to say web v1",
    )
    written = textfile.read_text()
    assert check_metrics(written) == []
    assert "process_" not in written
    assert "netpersona_agent_nft_dropped_packets_total" in written
    assert textfile.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".vm1.prom")] == []

    # The service's /metrics, as the VM can read it.
    served = fetch(fleet, "vm1", f"{METADATA_URL}/metrics")
    assert check_metrics(served) == []
    service = parse(served)
    assert total(service, "netpersona_build_info") == 1
    assert service[("process_open_fds", ())] > 0

    # The agent's log: JSON, one object a line (it was asked for json; its stderr is a file).
    fleet.stop_agent("vm1")
    lines = fleet.log_path("agent-vm1").read_text().splitlines()
    assert lines
    events = [json.loads(line) for line in lines]
    assert any(e["event"] == "metrics endpoint listening" for e in events)
    # httpx's line per request (the long polls) is not in it at info level.
    assert not [e for e in events if e["logger"].startswith(("httpx", "httpcore"))]


def test_a_single_pass_writes_the_textfile_and_logs_for_a_human(tmp_path: Path) -> None:
    """``agent --once`` with the service away: exit 1, a console log that says why, and a
    textfile that says the same to node_exporter."""
    from netpersona.lab.fleet import netpersona_argv
    from netpersona.testing.netns import netns

    textfile = tmp_path / "agent.prom"
    argv = [*netpersona_argv(), "agent", "--once", "--no-gossip", "--state-dir", str(tmp_path)]
    argv += ["--metadata-url", "http://127.0.0.1:9", "--metrics-textfile", str(textfile)]
    argv += ["--log-format", "console"]
    with netns("npmt") as ns:
        done = ns.run(argv, check=False, timeout=120)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert any("[error" in line and "pass failed" in line for line in lines), done.stderr
    assert not any(line.startswith("{") for line in lines)
    written = textfile.read_text()
    assert check_metrics(written) == []
    got = parse(written)
    assert got[("netpersona_agent_service_state", (("state", "unreachable"),))] == 1
    assert got[("netpersona_agent_watch_state", (("state", "failing"), ("view", "instance")))] == 1
    assert got[("netpersona_agent_converged", ())] == 0
    assert got[("netpersona_agent_gossip_state", (("state", "off"),))] == 1
