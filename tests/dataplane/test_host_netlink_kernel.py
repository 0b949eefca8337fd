"""The host facts read over netlink are what ``ip -j`` reports, in a throwaway namespace."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address, IPv6Address, ip_interface
from typing import Any

import pytest

from netpersona.dataplane import LinuxKernel
from netpersona.dataplane.host_probe import gather_facts
from netpersona.dataplane.netlink import HostLink, HostView, read_host
from netpersona.errors import KernelError
from netpersona.facts import HostFacts, Tier, Uplink
from netpersona.testing.netns import Netns, list_netns, netns

pytestmark = pytest.mark.kernel

SETUP = [
    "link add up0 type veth peer name up0p",
    "link set up0p up",
    "link set up0 mtu 1400 up",
    "address add 10.50.0.2/24 dev up0",
    "address add 10.51.0.2/16 dev up0",
    "address add fd50::2/64 dev up0 nodad",
    "link add up1 type veth peer name up1p",
    "link set up1p up",
    "link set up1 mtu 1300 up",
    "address add 10.52.0.1/24 dev up1",
    "address add fd52::1/64 dev up1 nodad",
    "link add side0 type veth peer name side0p",
    "link set side0p up",
    "link set side0 up",
    "address add 10.60.0.1/24 dev side0",
    "link add down0 type veth peer name down0p",
    "link set down0p up",
    "address add 10.70.0.1/24 dev down0",
    "route add default via 10.50.0.1 dev up0",
    "route add default dev side0 metric 200",
    "-6 route add default via fd50::1 dev up0",
    "-6 route add default via fd52::9 dev up1 metric 50",
    "-6 route add default dev side0 metric 300",
    "route add 10.90.0.0/16 via 10.52.0.9 dev up1",
]


@pytest.fixture
def host() -> Iterator[Netns]:
    with netns("npnl") as ns:
        for line in SETUP:
            ns.run(["ip", *line.split()])
        yield ns


def _ip_view(ns: Netns) -> HostView:
    """The same view from ``ip -j`` (the reference)."""
    kernel = LinuxKernel(ns.name)
    links = []
    for raw in json.loads(ns.run(["ip", "-d", "-j", "address", "show"]).stdout):
        info = raw.get("linkinfo", {})
        links.append(
            HostLink(
                name=raw["ifname"],
                index=raw["ifindex"],
                up="UP" in raw["flags"],
                loopback="LOOPBACK" in raw["flags"],
                mtu=raw["mtu"],
                vlan_id=info.get("info_data", {}).get("id")
                if info.get("info_kind") == "vlan"
                else None,
                addresses=tuple(
                    ip_interface(f"{a['local']}/{a['prefixlen']}")
                    for a in raw.get("addr_info", [])
                    if a.get("scope") == "global"
                ),
            )
        )
    gateways4: dict[str, IPv4Address] = {}
    gateways6: dict[str, IPv6Address] = {}
    for route in kernel.default_routes(4):
        if "dev" in route:
            gateways4.setdefault(route["dev"], IPv4Address(route.get("gateway") or 0))
    for route in kernel.default_routes(6):
        if "dev" in route and route.get("gateway"):
            gateways6.setdefault(route["dev"], IPv6Address(route["gateway"]))
    return HostView(tuple(links), gateways4, gateways6)


def _sorted(view: HostView) -> HostView:
    links = tuple(sorted(view.links, key=lambda link: link.index))
    return HostView(links, view.gateways4, view.gateways6)


def test_netlink_view_equals_ip_json(host: Netns) -> None:
    view = read_host(host.name)
    assert _sorted(view) == _sorted(_ip_view(host))
    by_name = {link.name: link for link in view.links}
    # The set-up is what was read (so the comparison above is not of two empty views).
    assert by_name["up0"].mtu == 1400
    assert by_name["up1"].mtu == 1300
    assert [str(a) for a in by_name["up0"].addresses] == [
        "10.50.0.2/24",
        "10.51.0.2/16",
        "fd50::2/64",
    ]
    assert not by_name["down0"].up
    assert by_name["lo"].loopback
    assert view.gateways4 == {"up0": IPv4Address("10.50.0.1"), "side0": IPv4Address(0)}
    assert view.gateways6 == {"up0": IPv6Address("fd50::1"), "up1": IPv6Address("fd52::9")}


def test_gather_facts_over_netlink(host: Netns) -> None:
    facts = gather_facts(LinuxKernel(host.name), tiers={"up0": Tier.STANDARD})
    assert facts == HostFacts(
        uplinks=(
            Uplink("side0", (ip_interface("10.60.0.1/24"),)),
            Uplink(
                "up0",
                tuple(ip_interface(a) for a in ("10.50.0.2/24", "10.51.0.2/16", "fd50::2/64")),
                gateway4=IPv4Address("10.50.0.1"),
                gateway6=IPv6Address("fd50::1"),
                tier=Tier.STANDARD,
            ),
            Uplink(
                "up1",
                tuple(ip_interface(a) for a in ("10.52.0.1/24", "fd52::1/64")),
                gateway6=IPv6Address("fd52::9"),
            ),
        )
    )


def test_without_default_routes_up_links_with_addresses(host: Netns) -> None:
    for line in ("route flush table main", "-6 route flush table main"):
        host.run(["ip", *line.split()])
    # Read from a worker thread, as the agent does.
    with ThreadPoolExecutor(1) as pool:
        facts: Any = pool.submit(gather_facts, LinuxKernel(host.name)).result(timeout=60)
    assert [u.name for u in facts.uplinks] == ["side0", "up0", "up1"]
    assert all(u.gateway4 is None and u.gateway6 is None for u in facts.uplinks)


def test_vlan_id_and_mtu_as_ip_json(host: Netns) -> None:
    done = host.run(
        ["ip", "link", "add", "link", "up0", "name", "up0.42", "type", "vlan", "id", "42"],
        check=False,
    )
    if "Unknown device type" in done.stderr:
        pytest.skip("this kernel has no 802.1Q support")
    assert done.returncode == 0, done.stderr
    host.run(["ip", "link", "set", "up0.42", "mtu", "1300", "up"])
    view = read_host(host.name)
    assert _sorted(view) == _sorted(_ip_view(host))
    vlan = next(link for link in view.links if link.name == "up0.42")
    assert (vlan.vlan_id, vlan.mtu) == (42, 1300)


def test_missing_namespace_is_a_clear_error_and_not_created() -> None:
    name = f"npnl-missing-{os.getpid()}"
    with pytest.raises(KernelError, match=name):
        read_host(name)
    assert name not in list_netns()


def test_dumps_longer_than_one_read(host: Netns) -> None:
    # 60 more links: the link dump (about 1.5 kB a link) comes in several datagrams.
    lines = [f"link add many{i} type veth peer name many{i}p" for i in range(30)]
    lines += [f"address add 10.100.{i}.1/24 dev many{i}" for i in range(30)]
    host.run(["ip", "-batch", "-"], input="\n".join(lines) + "\n")
    view = read_host(host.name)
    assert len(view.links) > 60
    assert _sorted(view) == _sorted(_ip_view(host))
