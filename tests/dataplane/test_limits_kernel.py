"""Egress shaping, connection and echo limits, and tier steering, measured with real traffic."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netpersona.compiler import compile_plan
from netpersona.dataplane import Applier, LinuxKernel, StateStore
from netpersona.dataplane.drift import drop_counters
from netpersona.model import parse_persona_text
from netpersona.probe.runner import listening, send_probes
from netpersona.testing.netns import Netns
from netpersona.testing.topology import Lab, lab

pytestmark = pytest.mark.kernel

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def net() -> Iterator[Lab]:
    with lab() as built:
        yield built


def _apply(net: Lab, tmp_path: Path, text: str, *, two_uplinks: bool = False) -> Applier:
    applier = Applier(LinuxKernel(net.vm.name), StateStore(tmp_path / "state"))
    persona = parse_persona_text(text)
    applier.apply(compile_plan(persona, net.facts(two_uplinks=two_uplinks)), "test")
    return applier


@pytest.mark.slow
def test_egress_rate_caps_a_bulk_tcp_transfer_within_ten_percent(net: Lab, tmp_path: Path) -> None:
    applier = _apply(net, tmp_path, (EXAMPLES / "bulk-transfer.yaml").read_text())
    server = net.peer.popen(
        ["iperf3", "-s", "-p", "5201"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(100):
            if net.peer.run(["ss", "-Hltn", "sport = :5201"]).stdout.strip():
                break
            time.sleep(0.05)
        done = net.vm.run(
            ["iperf3", "-c", net.peer4, "-p", "5201", "-t", "3", "-O", "1", "-J"], timeout=30
        )
    finally:
        server.kill()
        server.wait(timeout=10)
    received = json.loads(done.stdout)["end"]["sum_received"]["bits_per_second"]
    print(f"bulk TCP through egress_rate 10mbit: {received / 1e6:.2f} Mbit/s")
    assert 9_000_000 <= received <= 11_000_000, received
    applier.remove()


def test_max_connections_holds_per_source(net: Lab, tmp_path: Path) -> None:
    applier = _apply(
        net,
        tmp_path,
        """
network_persona:
  communication_mode: unicast
  security_profile: medium
  allowed_protocols: [postgres]
  priority: 3
  qos_parameters: {max_connections: 4}
""",
    )
    with listening(net.vm, tcp=[5432]):
        held = send_probes(
            net.peer,
            [{"id": "many", "proto": "tcp", "dst": net.vm4, "port": 5432, "count": 7,
              "timeout": 0.5}],
        )  # fmt: skip
        # Another source has its own allowance.
        other = send_probes(
            net.stranger,
            [{"id": "one", "proto": "tcp", "dst": net.vm4, "port": 5432, "count": 2}],
        )
    assert held["many"]["established"] == 4
    assert other["one"]["established"] == 2
    assert drop_counters(applier.kernel)["drop_conn_limit"][0] >= 3
    applier.remove()


def _echo_flood(net: Lab, tmp_path: Path, *, vary_id: bool) -> None:
    applier = _apply(net, tmp_path, (EXAMPLES / "web-frontend.yaml").read_text())
    flood = send_probes(
        net.peer,
        [{"id": "flood", "proto": "icmp", "dst": net.vm4, "count": 100, "timeout": 1.0,
          "vary_id": vary_id}],
    )["flood"]  # fmt: skip
    calm = send_probes(net.stranger, [{"id": "calm", "proto": "icmp", "dst": net.vm4, "count": 3}])
    dropped = drop_counters(applier.kernel)["drop_rate_limit"][0]
    applier.remove()
    # Medium profile: 10/s with a burst of 20 per source (docs/dataplane.md).
    assert 15 <= flood["replies"] <= 40, flood
    assert calm["calm"]["replies"] == 3
    assert dropped == 100 - flood["replies"]


def test_echo_requests_are_rate_limited_per_source(net: Lab, tmp_path: Path) -> None:
    _echo_flood(net, tmp_path, vary_id=True)


def test_a_ping_flood_with_one_identifier_is_rate_limited(net: Lab, tmp_path: Path) -> None:
    _echo_flood(net, tmp_path, vary_id=False)


def _uplink_counters(ns: Netns, destination: str) -> None:
    ns.run(
        ["nft", "-f", "-"],
        input=(
            "table inet steer\ndelete table inet steer\n"
            "table inet steer {\n  counter eth0 {}\n  counter eth1 {}\n"
            "  chain pre { type filter hook prerouting priority -300; policy accept;\n"
            f'    iifname "eth0" ip daddr {destination} counter name eth0\n'
            f'    iifname "eth1" ip daddr {destination} counter name eth1\n  }}\n}}\n'
        ),
    )


def _packets(ns: Netns, counter: str) -> int:
    out = ns.run(["nft", "list", "counter", "inet", "steer", counter]).stdout
    return int(out.split("packets")[1].split()[0])


@pytest.mark.parametrize(
    ("example", "uplink"),
    [("admin-workstation", "eth0"), ("dev-sandbox", "eth1")],
    ids=["priority-7-premium", "priority-0-standard"],
)
def test_priority_picks_the_uplink_tier(
    net: Lab, tmp_path: Path, example: str, uplink: str
) -> None:
    far = "203.0.113.9"  # off every subnet: only the default routes decide
    applier = _apply(net, tmp_path, (EXAMPLES / f"{example}.yaml").read_text(), two_uplinks=True)
    _uplink_counters(net.peer, far)
    send_probes(net.vm, [{"id": "out", "proto": "udp", "dst": far, "port": 9, "count": 5}])
    assert _packets(net.peer, uplink) == 5
    assert _packets(net.peer, "eth1" if uplink == "eth0" else "eth0") == 0
    applier.remove()
    net.peer.run(["nft", "delete", "table", "inet", "steer"])
