"""What the compiler does at the edges of what the kernel can hold (docs/dataplane.md)."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_interface

import pytest

from netpersona.compiler import compile_plan
from netpersona.compiler.plan import LinkSetting, TcClass
from netpersona.compiler.qos import HTB_LONGEST_BURST_USEC
from netpersona.errors import InvalidDocument
from netpersona.facts import HostFacts, Uplink
from tests.compiler.test_compile import FACTS, persona

V4 = Uplink("eth0", (ip_interface("10.0.0.5/24"),), IPv4Address("10.0.0.1"))
V6 = Uplink("eth1", (ip_interface("10.1.0.5/24"), ip_interface("fd00:1::5/64")))
LINK_LOCAL_ONLY = Uplink("eth2", (ip_interface("10.2.0.5/24"), ip_interface("fe80::5/64")))


def _persona_class(qos: dict[str, object]) -> TcClass:
    plan = compile_plan(persona(qos_parameters=qos), FACTS)
    return next(op for op in plan.tc if isinstance(op, TcClass) and op.classid == "6e70:20")


@pytest.mark.parametrize("uplink", [V6, LINK_LOCAL_ONLY], ids=["global", "link-local"])
def test_an_mtu_below_1280_is_refused_on_an_uplink_with_ipv6(uplink: Uplink) -> None:
    facts = HostFacts(uplinks=(V4, uplink))
    with pytest.raises(InvalidDocument) as caught:
        compile_plan(persona(qos_parameters={"mtu": 1279}), facts)
    (error,) = caught.value.errors
    assert error.pointer == "/qos_parameters/mtu"
    assert error.message.startswith("1279 is below 1280")
    assert f"uplink {uplink.name} has IPv6" in error.message
    assert str(uplink.addresses[1]) in error.message


def test_an_ipv4_only_vm_keeps_the_ipv4_floor() -> None:
    plan = compile_plan(persona(qos_parameters={"mtu": 68}), HostFacts(uplinks=(V4,)))
    assert plan.links == (LinkSetting("eth0", mtu=68),)


def test_1280_is_accepted_with_ipv6() -> None:
    plan = compile_plan(persona(qos_parameters={"mtu": 1280}), HostFacts(uplinks=(V6,)))
    assert plan.links == (LinkSetting("eth1", mtu=1280),)


def test_rates_become_whole_bytes_per_second_rounded_down_as_tc_does() -> None:
    cls = _persona_class({"egress_rate": "1001bit", "egress_ceil": "1999bit"})
    assert (cls.rate, cls.ceil) == (1000, 1992)


def test_a_burst_htb_cannot_hold_is_held_at_the_longest_it_can() -> None:
    # 1 mbit/s is 125000 bytes/s: HTB holds at most 274.877906 s of that, about 32.8 MiB.
    cls = _persona_class({"egress_rate": "1mbit", "burst": "64mb"})
    assert cls.burst == HTB_LONGEST_BURST_USEC * 125_000 // 1_000_000 == 34_359_738
    assert _persona_class({"egress_rate": "2mbit", "burst": "64mb"}).burst == 64 * 1024 * 1024


def test_below_1280_the_uplink_has_no_ipv6_settings_to_set() -> None:
    facts = HostFacts(uplinks=(V4,))
    keys = {s.key for s in compile_plan(persona(qos_parameters={"mtu": 1000}), facts).sysctls}
    assert "net.ipv6.conf.eth0.accept_redirects" not in keys
    assert "net.ipv6.conf.all.accept_redirects" in keys
    keys = {s.key for s in compile_plan(persona(qos_parameters={"mtu": 1280}), facts).sysctls}
    assert "net.ipv6.conf.eth0.accept_redirects" in keys
