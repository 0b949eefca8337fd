"""A link's IPv6 state: what an MTU change can destroy, and how to put it back.

When a link's MTU goes below 1280 (RFC 8200 section 5) the kernel removes IPv6 from it
altogether (``addrconf_notify``, NETDEV_CHANGEMTU): every address, every IPv6 route through it,
and its ``net.ipv6.conf.<link>.*`` settings. Raising the MTU again makes a fresh IPv6 device
from ``net.ipv6.conf.default`` with only an automatic link-local address. Setting the MTU back
is therefore not an undo of lowering it; the applier reads this state before it changes a
link's MTU and, after setting the MTU back, restores it: settings first (``disable_ipv6``
before the rest, since it adds and removes addresses), then addresses, then routes (a gateway
must be on-link before a route can use it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from netpersona.compiler.host import IPV6_MIN_MTU, sysctl_ifname
from netpersona.model.jsontree import JSON

if TYPE_CHECKING:
    from netpersona.dataplane.kernel import Kernel

__all__ = [
    "IPV6_MIN_MTU",
    "LinkAddress",
    "LinkIPv6",
    "LinkRoute",
    "ipv6_differences",
    "ipv6_settings_prefix",
    "parse_link_addresses",
    "parse_link_routes",
    "parse_sysctl_listing",
    "restore_link_ipv6",
]


# Address flags that ``ip address add`` takes back; the rest (tentative, dadfailed, dynamic,
# deprecated, optimistic) are states the kernel reaches on its own.
ADDRESS_FLAGS = ("nodad", "noprefixroute", "home", "mngtmpaddr", "autojoin")
FOREVER = 4294967295
# ``stable_secret`` cannot be read until it is set; ``mtu`` follows the link's MTU.
_SKIPPED_SETTINGS = ("stable_secret", "mtu")


@dataclass(frozen=True, slots=True, order=True)
class LinkAddress:
    address: str  # "fd00::1/64"
    flags: tuple[str, ...] = ()
    # Remaining lifetimes of a dynamic address; they shrink between two reads.
    valid_lft: int | None = field(default=None, compare=False)
    preferred_lft: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True, order=True)
class LinkRoute:
    dst: str
    table: str = "main"
    gateway: str | None = None
    src: str | None = None
    metric: int | None = None
    kind: str = "unicast"
    protocol: str | None = None
    expires: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class LinkIPv6:
    """The IPv6 side of one link, as far as an MTU change can take it away."""

    ifname: str
    addresses: tuple[LinkAddress, ...] = ()
    settings: tuple[tuple[str, str], ...] = ()  # sysctl key -> value
    routes: tuple[LinkRoute, ...] = ()

    def to_json(self) -> JSON:
        return asdict(self)

    @classmethod
    def from_json(cls, body: JSON) -> LinkIPv6:
        return cls(
            ifname=body["ifname"],
            addresses=tuple(
                LinkAddress(**{**a, "flags": tuple(a.get("flags", ()))})
                for a in body.get("addresses", ())
            ),
            settings=tuple((str(k), str(v)) for k, v in body.get("settings", ())),
            routes=tuple(LinkRoute(**r) for r in body.get("routes", ())),
        )


def ipv6_settings_prefix(ifname: str) -> str:
    """The start of every ``net.ipv6.conf`` key of a link, in sysctl(8) spelling."""
    return f"net.ipv6.conf.{sysctl_ifname(ifname)}."


def parse_link_addresses(links: Iterable[JSON]) -> tuple[LinkAddress, ...]:
    """The IPv6 addresses in ``ip -j address show dev LINK`` output."""
    out = []
    for link in links:
        for info in link.get("addr_info", ()):
            if info.get("family") != "inet6":
                continue
            valid = int(info.get("valid_life_time", FOREVER))
            preferred = int(info.get("preferred_life_time", FOREVER))
            out.append(
                LinkAddress(
                    address=f"{info['local']}/{info['prefixlen']}",
                    flags=tuple(flag for flag in ADDRESS_FLAGS if info.get(flag)),
                    valid_lft=None if valid == FOREVER else valid,
                    preferred_lft=None if preferred == FOREVER else preferred,
                )
            )
    return tuple(sorted(out))


def parse_link_routes(routes: Iterable[JSON]) -> tuple[LinkRoute, ...]:
    """The IPv6 routes through a link (``ip -6 -j route show table all dev LINK``) that go
    with it and do not come back by themselves: the kernel's own (prefix routes, the local
    table) are remade with the addresses."""
    out = []
    for raw in routes:
        if raw.get("protocol") == "kernel" or raw.get("table") == "local":
            continue
        out.append(
            LinkRoute(
                dst=raw["dst"],
                table=str(raw.get("table", "main")),
                gateway=raw.get("gateway"),
                src=raw.get("prefsrc"),
                metric=raw.get("metric"),
                kind=raw.get("type", "unicast"),
                protocol=raw.get("protocol"),
                expires=raw.get("expires"),
            )
        )
    return tuple(sorted(out))


def parse_sysctl_listing(text: str) -> tuple[tuple[str, str], ...]:
    """``sysctl -a`` lines (``key = value``) as sorted pairs, values with single spaces."""
    pairs = []
    for line in text.splitlines():
        key, sep, value = line.partition(" = ")
        if sep and not key.endswith(_SKIPPED_SETTINGS):
            pairs.append((key.strip(), " ".join(value.split())))
    return tuple(sorted(pairs))


def address_argv(address: LinkAddress) -> list[str]:
    """The arguments of ``ip -6 address add ... dev LINK`` after the address itself."""
    argv = list(address.flags)
    if address.valid_lft is not None:
        argv += ["valid_lft", str(address.valid_lft)]
        argv += ["preferred_lft", str(address.preferred_lft or 0)]
    return argv


def route_argv(route: LinkRoute) -> list[str]:
    """The arguments of ``ip -6 route add`` for ``route``, but for the device."""
    argv = [] if route.kind == "unicast" else [route.kind]
    argv += [route.dst, "table", route.table]
    for word, value in (
        ("via", route.gateway),
        ("src", route.src),
        ("metric", route.metric),
        ("proto", route.protocol),
        ("expires", route.expires),
    ):
        if value is not None:
            argv += [word, str(value)]
    return argv


def _settings_order(settings: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted(settings, key=lambda item: (not item[0].endswith(".disable_ipv6"), item[0]))


def restore_link_ipv6(kernel: Kernel, saved: LinkIPv6) -> None:
    """Put ``saved`` back on its link, whose MTU must already be what it was then."""
    now = kernel.link_ipv6(saved.ifname)
    current = dict(now.settings)
    for key, value in _settings_order(saved.settings):
        if current.get(key) != value:
            kernel.sysctl_set(key, value)
    now = kernel.link_ipv6(saved.ifname)
    for address in sorted(set(saved.addresses) - set(now.addresses)):
        kernel.address_add(saved.ifname, address)
    for route in sorted(set(saved.routes) - set(now.routes)):
        kernel.link_route_add(saved.ifname, route)


def ipv6_differences(was: LinkIPv6, now: LinkIPv6 | None) -> list[str]:
    """How the IPv6 side of a link differs from what it was (for verifying a rollback)."""
    now = now or LinkIPv6(was.ifname)
    out = []
    pairs: tuple[tuple[str, tuple[Any, ...], tuple[Any, ...]], ...] = (
        ("addresses", was.addresses, now.addresses),
        ("routes", was.routes, now.routes),
        ("settings", was.settings, now.settings),
    )
    for what, before, after in pairs:
        gone = [repr(x) for x in before if x not in after]
        new = [repr(x) for x in after if x not in before]
        if gone or new:
            out.append(f"ipv6 on {was.ifname}: {what} lost {gone}, gained {new}")
    return out
