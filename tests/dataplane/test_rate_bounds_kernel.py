"""Every rate and size the validator accepts is accepted by the kernel, at both ends.

Each field is compiled at its smallest and largest accepted value; the nftables part goes
through ``nft -c`` (as JSON and as text, in an empty namespace), and the whole plan is applied
in a throwaway namespace with a veth uplink, where the real ``tc`` and ``nft`` load it and the
applier reads it back. One step outside either end, the validator refuses with an error that
names the field and the value.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from ipaddress import ip_interface
from pathlib import Path

import pytest

from netpersona.compiler import compile_plan, replace_table_batch
from netpersona.compiler.plan import Plan, TcClass
from netpersona.dataplane import Applier, LinuxKernel, StateStore
from netpersona.errors import InvalidDocument
from netpersona.facts import HostFacts, Uplink
from netpersona.model import parse_persona
from netpersona.model.persona import Persona
from netpersona.model.units import MAX_RATE_BPS, MAX_SIZE_BYTES, MIN_RATE_BPS
from netpersona.nftables.render import render_batch
from netpersona.testing.netns import Netns, netns

pytestmark = pytest.mark.kernel

UPLINK = "npq0"
FACTS = HostFacts(uplinks=(Uplink(UPLINK, (ip_interface("10.78.0.1/24"),)),))
LOW, HIGH = f"{MIN_RATE_BPS}bit", f"{MAX_RATE_BPS}bit"
SMALL, LARGE = "1b", f"{MAX_SIZE_BYTES}b"

# Every rate field at both ends, alone and with the smallest and largest burst.
EXTREMES = [
    {field: rate, **({"burst": burst} if burst else {})}
    for field in ("ingress_rate", "egress_rate", "egress_ceil")
    for rate in (LOW, HIGH)
    for burst in (None, SMALL, LARGE)
] + [{"ingress_rate": HIGH, "egress_rate": LOW, "egress_ceil": HIGH, "burst": LARGE}]


def _persona(qos: dict[str, str]) -> Persona:
    return parse_persona(
        {
            "network_persona": {
                "communication_mode": "unicast",
                "security_profile": "medium",
                "allowed_protocols": ["ssh"],
                "priority": 3,
                "qos_parameters": qos,
            }
        }
    )


def _nft_check(script: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["unshare", "--net", "nft", "-c", *flags, "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def vm() -> Iterator[Netns]:
    with netns("nprate") as ns:
        ns.run(["ip", "link", "add", UPLINK, "type", "veth", "peer", "name", "npq1"])
        ns.run(["ip", "address", "add", "10.78.0.1/24", "dev", UPLINK])
        for link in (UPLINK, "npq1"):
            ns.run(["ip", "link", "set", link, "up"])
        yield ns


def _assert_htb_burst_held(plan: Plan, live: list[TcClass]) -> None:
    """The persona class holds the burst planned, or tc's own default (1600 bytes plus a
    nanosecond of the rate), to the microsecond of the rate that tc keeps: not a wrapped one."""
    (want,) = [c for c in plan.tc if isinstance(c, TcClass) and c.classid == "6e70:20"]
    (have,) = [c for c in live if c.classid == "6e70:20"]
    rate_bytes = want.rate // 8
    expected = want.burst if want.burst is not None else rate_bytes // 10**9 + 1600
    assert have.burst is not None
    assert abs(have.burst - expected) <= max(rate_bytes // 10**6 + 1, expected // 20), have


def _id(qos: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in qos.items())


@pytest.mark.parametrize("qos", EXTREMES, ids=_id)
def test_the_kernel_accepts_every_extreme(vm: Netns, tmp_path: Path, qos: dict[str, str]) -> None:
    plan: Plan = compile_plan(_persona(qos), FACTS)
    batch = replace_table_batch(plan.nftables_objects())
    as_json = _nft_check(json.dumps(batch), "-j")
    assert as_json.returncode == 0, as_json.stderr
    as_text = _nft_check(render_batch(batch))
    assert as_text.returncode == 0, as_text.stderr
    # The real thing: tc and nft load the plan and the applier reads every part of it back.
    applier = Applier(LinuxKernel(vm.name), StateStore(tmp_path / "state"))
    applier.apply(plan, "extreme")
    if "ingress_rate" in qos:
        listing = vm.run(["nft", "-j", "list", "chain", "inet", "netpersona", "input"]).stdout
        assert '"limit"' in listing
    if {"egress_rate", "egress_ceil"} & qos.keys():
        _assert_htb_burst_held(plan, LinuxKernel(vm.name).htb_classes(UPLINK))
    applier.remove()
    assert vm.run(["nft", "list", "tables"]).stdout == ""


OUTSIDE = [
    (field, value)
    for field in ("ingress_rate", "egress_rate", "egress_ceil")
    for value in (f"{MIN_RATE_BPS - 1}bit", f"{MAX_RATE_BPS + 1}bit")
] + [("burst", "0b"), ("burst", f"{MAX_SIZE_BYTES + 1}b")]


@pytest.mark.parametrize(("field", "value"), OUTSIDE)
def test_one_step_outside_is_refused_naming_field_and_value(field: str, value: str) -> None:
    qos = {field: value}
    if field == "burst":
        qos["egress_rate"] = "10mbit"
    with pytest.raises(InvalidDocument) as caught:
        _persona(qos)
    (error,) = caught.value.errors
    assert error.pointer == f"/network_persona/qos_parameters/{field}"
    assert f'"{value}"' in error.message
