"""Reading a link's IPv6 state from iproute2 and sysctl output, and keeping it on disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from netpersona.dataplane.link_ipv6 import (
    LinkAddress,
    LinkIPv6,
    LinkRoute,
    ipv6_differences,
    parse_link_addresses,
    parse_link_routes,
    parse_sysctl_listing,
    route_argv,
)
from netpersona.dataplane.state import Originals, StateStore

ADDRESSES = [
    {
        "ifname": "eth0",
        "addr_info": [
            {"family": "inet", "local": "10.0.0.5", "prefixlen": 24},
            {
                "family": "inet6",
                "local": "fd00::5",
                "prefixlen": 64,
                "nodad": True,
                "tentative": True,
                "valid_life_time": 4294967295,
                "preferred_life_time": 4294967295,
            },
            {
                "family": "inet6",
                "local": "2001:db8::5",
                "prefixlen": 64,
                "dynamic": True,
                "mngtmpaddr": True,
                "valid_life_time": 86000,
                "preferred_life_time": 14000,
            },
        ],
    }
]
ROUTES: list[dict[str, Any]] = [
    {"dst": "fd00::/64", "protocol": "kernel", "metric": 256},
    {"dst": "2001:db8:1::/48", "gateway": "fd00::1", "metric": 300},
    {"dst": "default", "gateway": "fe80::1", "protocol": "ra", "metric": 1024, "expires": 1700},
    {"type": "local", "dst": "fd00::5", "table": "local", "protocol": "kernel"},
]


def test_addresses_keep_the_flags_ip_can_set_and_dynamic_lifetimes() -> None:
    static, dynamic = sorted(parse_link_addresses(ADDRESSES), key=lambda a: a.address)[::-1]
    assert static == LinkAddress("fd00::5/64", ("nodad",))
    assert (static.valid_lft, static.preferred_lft) == (None, None)
    assert dynamic.address == "2001:db8::5/64"
    assert dynamic.flags == ("mngtmpaddr",)
    assert (dynamic.valid_lft, dynamic.preferred_lft) == (86000, 14000)


def test_routes_leave_out_what_the_kernel_remakes_with_the_addresses() -> None:
    routes = parse_link_routes(ROUTES)
    assert [r.dst for r in routes] == ["2001:db8:1::/48", "default"]
    ra = routes[1]
    assert route_argv(ra) == [
        "default",
        "table",
        "main",
        "via",
        "fe80::1",
        "metric",
        "1024",
        "proto",
        "ra",
        "expires",
        "1700",
    ]


def test_sysctl_listing_skips_what_follows_the_link_or_cannot_be_read() -> None:
    text = (
        "net.ipv6.conf.eth0.hop_limit = 33\n"
        "net.ipv6.conf.eth0.mtu = 1500\n"
        "net.ipv6.conf.eth0.accept_ra = 0\n"
    )
    assert parse_sysctl_listing(text) == (
        ("net.ipv6.conf.eth0.accept_ra", "0"),
        ("net.ipv6.conf.eth0.hop_limit", "33"),
    )


def test_differences_ignore_shrinking_lifetimes_but_not_a_lost_address() -> None:
    was = LinkIPv6(
        "eth0", parse_link_addresses(ADDRESSES), (("k", "1"),), parse_link_routes(ROUTES)
    )
    older = LinkIPv6(
        "eth0",
        tuple(LinkAddress(a.address, a.flags, valid_lft=1, preferred_lft=1) for a in was.addresses),
        was.settings,
        was.routes,
    )
    assert ipv6_differences(was, older) == []
    gone = LinkIPv6("eth0", was.addresses[:1], (("k", "2"),), was.routes)
    problems = ipv6_differences(was, gone)
    assert len(problems) == 2
    assert "fd00::5/64" in problems[0]
    assert "settings" in problems[1]


def test_originals_keep_a_links_ipv6_state_across_a_restart(tmp_path: Path) -> None:
    link = LinkIPv6(
        "eth0",
        parse_link_addresses(ADDRESSES),
        (("net.ipv6.conf.eth0.disable_ipv6", "1"),),
        (LinkRoute("default", gateway="fe80::1", metric=1024),),
    )
    store = StateStore(tmp_path)
    store.save_originals(Originals(mtu={"eth0": 1500}, ipv6={"eth0": link}))
    assert store.load_originals().ipv6 == {"eth0": link}
    body = json.loads(store.originals_path.read_text())
    assert body["ipv6"]["eth0"]["settings"] == [["net.ipv6.conf.eth0.disable_ipv6", "1"]]
