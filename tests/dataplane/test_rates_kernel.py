"""ingress_rate, burst and egress_ceil, measured with real traffic.

The machine running these may be heavily loaded, so a sender can fall short of what it tries
to send: each test asserts an upper bound tightly (the kernel's own clock enforces it, however
slow the sender is) and a lower bound loosely.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netpersona.testing.topology import Lab, lab
from tests.dataplane.packets import apply, blast, drops, probe_counter, probe_table

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

PORT = 5001
SIZE = 1000  # UDP payload; the IP packet nftables measures is 28 bytes more
PACKET = SIZE + 28


@pytest.fixture(scope="module")
def net() -> Iterator[Lab]:
    with lab() as built:
        yield built


def _policed(qos: str) -> str:
    return f"""
network_persona:
  communication_mode: unicast
  security_profile: low
  allowed_protocols: [udp/{PORT}]
  priority: 3
  qos_parameters: {qos}
"""


def _count_passed(net: Lab) -> None:
    # Input, after the persona's chain (priority 0): what the policing let through.
    probe_table(net.vm, "input", 10, {"passed": f"udp dport {PORT}"})


def test_ingress_rate_polices_a_udp_flood(net: Lab, tmp_path: Path) -> None:
    rate = 1_000_000  # bytes/s: 8mbit
    applier = apply(net.vm, tmp_path, _policed("{ingress_rate: 8mbit}"), net.facts())
    _count_passed(net)
    sent, elapsed = blast(net.peer, net.vm4, PORT, seconds=3.0, size=SIZE)
    passed_packets, passed = probe_counter(net.vm, "passed")
    dropped = drops(applier)["drop_ingress_rate"]
    applier.remove()
    offered = sent * PACKET
    # nft_limit's bucket holds one second of the rate plus the burst (100 ms of the rate by
    # default), full at the start.
    bucket = rate + rate // 10
    print(
        f"ingress_rate 8mbit: offered {offered * 8 / elapsed / 1e6:.1f} Mbit/s, "
        f"passed {passed * 8 / elapsed / 1e6:.2f} Mbit/s over {elapsed:.2f} s, "
        f"{(passed - bucket) * 8 / elapsed / 1e6:.2f} Mbit/s after the initial bucket"
    )
    ceiling = rate * elapsed + bucket
    assert passed <= 1.5 * ceiling, (passed, ceiling)
    assert passed >= 0.5 * min(offered, rate * elapsed), (passed, offered)
    assert offered > 2 * ceiling, "the sender could not outrun the policer"
    # The rest was dropped by the policing and counted (a loaded receiver may also lose some
    # before nftables sees them).
    assert dropped > 0
    assert dropped + passed_packets <= sent


@pytest.mark.parametrize("burst", [131072, None], ids=["burst-128kb", "default-burst"])
def test_burst_lets_a_short_train_through_at_once(
    net: Lab, tmp_path: Path, burst: int | None
) -> None:
    rate = 10_000  # bytes/s: 80kbit, so the train's duration adds little
    qos = "{ingress_rate: 80kbit, burst: 128kb}" if burst else "{ingress_rate: 80kbit}"
    applier = apply(net.vm, tmp_path, _policed(qos), net.facts())
    _count_passed(net)
    sent, elapsed = blast(net.peer, net.vm4, PORT, seconds=30.0, size=SIZE, limit=400)
    _packets, passed = probe_counter(net.vm, "passed")
    applier.remove()
    print(f"burst {burst}: {passed} of {sent * PACKET} bytes passed in {elapsed:.2f} s")
    allowed = burst if burst else 15_000  # docs/dataplane.md: at least 15000 bytes
    ceiling = rate * (elapsed + 1) + allowed
    assert passed <= 1.5 * ceiling + PACKET, (passed, ceiling)
    assert passed >= 0.8 * allowed, (passed, allowed)
    if burst:
        # More than the default burst's upper bound: the burst, not the rate, let it through.
        assert passed > 1.5 * (rate * (elapsed + 1) + 15_000) + PACKET, (passed, elapsed)


def test_egress_ceil_lets_the_class_borrow_up_to_the_ceiling(net: Lab, tmp_path: Path) -> None:
    ceil = 10_000_000  # bit/s
    rate = 2_000_000
    persona = """
network_persona:
  communication_mode: unicast
  security_profile: low
  allowed_protocols: [tcp]
  priority: 3
  qos_parameters: {egress_rate: 2mbit, egress_ceil: 10mbit}
"""
    applier = apply(net.vm, tmp_path, persona, net.facts())
    server = net.peer.popen(
        ["iperf3", "-s", "-p", "5201"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(200):
            if net.peer.run(["ss", "-Hltn", "sport = :5201"]).stdout.strip():
                break
            time.sleep(0.05)
        done = net.vm.run(
            ["iperf3", "-c", net.peer4, "-p", "5201", "-t", "4", "-O", "1", "-J"], timeout=60
        )
    finally:
        server.kill()
        server.wait(timeout=10)
    applier.remove()
    received = json.loads(done.stdout)["end"]["sum_received"]["bits_per_second"]
    print(f"TCP through egress_rate 2mbit, egress_ceil 10mbit: {received / 1e6:.2f} Mbit/s")
    assert received <= 1.5 * ceil, received
    # Well above the guaranteed rate: the ceiling, not the rate, is what limits it.
    assert received >= max(0.5 * ceil, 2 * rate), received
