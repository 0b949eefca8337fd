"""An MTU below 1280 takes IPv6 off a link; a rollback must put all of it back.

The compiler refuses such an MTU on an uplink with IPv6 (tests/compiler), so these plans are
built by hand: a link step that sets MTU 1200, then a step that fails: a route the kernel
refuses, or an injected fault. Each is tried five times on the same link: every rollback
must hold and leave the link's addresses, routes, MTU and settings as the kernel listed them
before.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from ipaddress import ip_interface
from pathlib import Path
from typing import Any

import pytest

from netpersona.compiler import compile_plan
from netpersona.compiler.plan import ROUTE_TABLE, LinkSetting, Plan, Route, Sysctl
from netpersona.dataplane import (
    Applier,
    ApplyReport,
    ApplyRolledBack,
    Kernel,
    LinuxKernel,
    StateStore,
)
from netpersona.facts import HostFacts, Uplink
from netpersona.model import parse_persona_text
from netpersona.testing.kernel_faults import FaultyKernel
from netpersona.testing.netns import Netns, netns, netns_group

pytestmark = pytest.mark.kernel

LINK = "np6"


def _wait_for_dad(ns: Netns) -> None:
    for _ in range(100):
        if "tentative" not in ns.run(["ip", "-6", "address", "show", "dev", LINK]).stdout:
            return
        time.sleep(0.1)
    raise AssertionError("duplicate address detection did not finish")


@pytest.fixture(scope="module")
def vm() -> Iterator[Netns]:
    """A VM namespace whose uplink carries IPv4, a static IPv6 address, IPv6 routes through
    it, and per-interface IPv6 settings that differ from the kernel's defaults."""
    with netns_group(2, prefix="npmtu") as (vm_ns, peer):
        vm_ns.run(["ip", "link", "add", LINK, "type", "veth", "peer", "name", "np6p"])
        vm_ns.run(["ip", "link", "set", "np6p", "netns", peer.name])
        for ns, link, v4, v6 in (
            (vm_ns, LINK, "10.77.0.1/24", "fd00:77::1/64"),
            (peer, "np6p", "10.77.0.2/24", "fd00:77::2/64"),
        ):
            ns.run(["ip", "address", "add", v4, "dev", link])
            ns.run(["ip", "address", "add", v6, "dev", link])
            ns.run(["ip", "link", "set", link, "up"])
        for key, value in (("hop_limit", "33"), ("accept_ra", "0"), ("dad_transmits", "2")):
            vm_ns.run(["sysctl", "-q", "-w", f"net.ipv6.conf.{LINK}.{key}={value}"])
        _wait_for_dad(vm_ns)
        vm_ns.run(
            ["ip", "-6", "route", "add", "2001:db8::/32", "via", "fd00:77::2", "metric", "300"]
        )
        vm_ns.run(["ip", "-6", "route", "add", "default", "via", "fe80::1", "dev", LINK])
        yield vm_ns


def _link_state(ns: Netns) -> dict[str, Any]:
    """What a user reads from the kernel: ``ip -j``, and the link's sysctls."""
    link = json.loads(ns.run(["ip", "-j", "address", "show", "dev", LINK]).stdout)[0]
    routes = json.loads(
        ns.run(["ip", "-6", "-j", "route", "show", "table", "all", "dev", LINK]).stdout
    )
    listing = ns.run(["sysctl", "-a", "-r", rf"^net\.ipv6\.conf\.{LINK}\."], check=False).stdout
    return {
        "mtu": link["mtu"],
        "addresses": sorted(
            (a["family"], a["local"], a["prefixlen"], a["scope"]) for a in link["addr_info"]
        ),
        "routes": sorted(
            (r["dst"], r.get("gateway"), r.get("metric"), r.get("table", "main")) for r in routes
        ),
        "sysctls": sorted(listing.splitlines()),
    }


def _failing_plan(kernel: LinuxKernel, variant: str) -> tuple[Kernel, Plan]:
    mtu = LinkSetting(LINK, mtu=1200)
    if variant == "failing-route":
        # The kernel refuses this route: its gateway is on no link.
        route = Route(4, ROUTE_TABLE, "default", LINK, gateway="192.0.2.1")
        return kernel, Plan(nftables=(), links=(mtu,), routes=(route,))
    sysctl = Sysctl(f"net.ipv4.conf.{LINK}.rp_filter", "2")
    faulty = FaultyKernel(kernel, fail_at=2)
    return faulty.kernel, Plan(nftables=(), links=(mtu,), sysctls=(sysctl,))


@pytest.mark.parametrize("variant", ["failing-route", "injected-fault"])
def test_a_rollback_after_an_mtu_below_1280_restores_ipv6(
    vm: Netns, tmp_path: Path, variant: str
) -> None:
    before = _link_state(vm)
    assert ("inet6", "fd00:77::1", 64, "global") in before["addresses"]
    assert any(line.endswith("hop_limit = 33") for line in before["sysctls"])
    for attempt in range(5):
        kernel, plan = _failing_plan(LinuxKernel(vm.name), variant)
        applier = Applier(kernel, StateStore(tmp_path / f"state-{attempt}"))
        with pytest.raises(ApplyRolledBack) as caught:
            applier.apply(plan, "too-small")
        report = caught.value.report
        assert isinstance(report, ApplyReport)
        assert report.steps[0] == f"link {LINK}: mtu 1500 -> 1200"
        assert report.rollback_held, (attempt, report.rollback_problems)
        # The address comes back through duplicate address detection, as any new one does;
        # its local route follows when that is done.
        _wait_for_dad(vm)
        assert _link_state(vm) == before, attempt


@pytest.mark.parametrize("profile", ["low", "medium"])
def test_an_ipv4_only_uplink_goes_below_1280_and_back(tmp_path: Path, profile: str) -> None:
    """IPv6 is off on this uplink (``disable_ipv6``), so the compiler lets an MTU of 1000
    through, and the kernel drops the link's IPv6 settings with it. A later persona with a
    larger MTU, and remove, must not bring IPv6 to life with a fresh device's defaults; the
    medium profile also sets the uplink's IPv6 redirect setting whenever the link has one."""
    with netns("npmtu") as ns:
        ns.run(["ip", "link", "add", LINK, "type", "veth", "peer", "name", "np6p"])
        ns.run(["sysctl", "-q", "-w", f"net.ipv6.conf.{LINK}.disable_ipv6=1"])
        ns.run(["sysctl", "-q", "-w", f"net.ipv6.conf.{LINK}.hop_limit=33"])
        ns.run(["ip", "address", "add", "10.77.0.1/24", "dev", LINK])
        for link in (LINK, "np6p"):
            ns.run(["ip", "link", "set", link, "up"])
        before = _link_state(ns)
        assert not [a for a in before["addresses"] if a[0] == "inet6"]
        facts = HostFacts(uplinks=(Uplink(LINK, (ip_interface("10.77.0.1/24"),)),))
        applier = Applier(LinuxKernel(ns.name), StateStore(tmp_path / "state"))

        def apply(mtu: int) -> dict[str, Any]:
            persona = parse_persona_text(PERSONA.format(profile=profile, mtu=mtu))
            applier.apply(compile_plan(persona, facts), f"mtu-{mtu}")
            return _link_state(ns)

        low = apply(1000)
        assert (low["mtu"], low["sysctls"]) == (1000, [])
        high = apply(1500)
        wanted = {f"net.ipv6.conf.{LINK}.disable_ipv6 = 1", f"net.ipv6.conf.{LINK}.hop_limit = 33"}
        if profile == "medium":
            wanted.add(f"net.ipv6.conf.{LINK}.accept_redirects = 0")
        assert wanted <= set(high["sysctls"])
        assert high["addresses"] == before["addresses"]
        apply(1000)
        applier.remove()
        assert _link_state(ns) == before


PERSONA = """
network_persona:
  communication_mode: unicast
  security_profile: {profile}
  allowed_protocols: [ssh]
  priority: 3
  qos_parameters: {{mtu: {mtu}}}
"""
