"""The host's links, addresses and default routes, read in-process over rtnetlink (pyroute2).

One netlink session per read (three dumps: links, addresses, main-table routes of each family),
instead of one ``ip -j`` process per question. :func:`read_host` returns what
:func:`~netpersona.dataplane.host_probe.gather_facts` needs, plus each link's MTU and VLAN id.

pyroute2 is imported on first use, and only :mod:`pyroute2.iproute.linux` and what it needs:
the package's ``__init__`` imports every pyroute2 module (NDB, IPDB, wireless, ...), which
costs about twice the memory and import time, so the package is stood in for while that one
module loads (see :func:`_iproute_class`); a later ``import pyroute2`` elsewhere still runs the
real ``__init__``.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os
import socket
import sys
import threading
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_interface
from typing import Any

from netpersona.errors import KernelError
from netpersona.facts import IPInterface

__all__ = ["HostLink", "HostView", "read_host"]

_AF_INET, _AF_INET6 = 2, 10
_MAIN_TABLE = 254
_IFF_UP, _IFF_LOOPBACK = 0x1, 0x8
_RT_SCOPE_UNIVERSE = 0

_CLONE_NEWNET = 0x40000000
_NETLINK_ROUTE = 0

_IMPORT_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class HostLink:
    """One link as the kernel reports it; ``addresses`` are its global-scope ones, in the
    kernel's order (IPv4 first)."""

    name: str
    index: int
    up: bool
    loopback: bool
    mtu: int
    vlan_id: int | None = None
    addresses: tuple[IPInterface, ...] = ()


@dataclass(frozen=True, slots=True)
class HostView:
    """The links, and the first gateway of each link's default routes in the main table.

    A link with an IPv4 default route without a gateway (a device route) maps to
    ``0.0.0.0``; an IPv6 default route without a gateway is left out (as ``ip`` shows them,
    these are not how a VM reaches the world)."""

    links: tuple[HostLink, ...] = ()
    gateways4: dict[str, IPv4Address] = field(default_factory=dict)
    gateways6: dict[str, IPv6Address] = field(default_factory=dict)


def read_host(netns: str | None = None) -> HostView:
    """Read the links, addresses and default routes of ``netns`` (or the current namespace)."""
    iproute = _iproute_class()
    try:
        with iproute(fileno=_socket_in(netns).detach()) if netns else iproute() as ipr:
            links = list(ipr.get_links())
            addrs = list(ipr.get_addr())
            routes4 = list(ipr.get_routes(family=_AF_INET, table=_MAIN_TABLE))
            routes6 = list(ipr.get_routes(family=_AF_INET6, table=_MAIN_TABLE))
    except OSError as exc:
        raise KernelError(f"netlink read of the host's links failed: {exc}") from exc
    names = {msg["index"]: msg.get_attr("IFLA_IFNAME") for msg in links}
    by_index: dict[int, list[IPInterface]] = {}
    for msg in addrs:
        if msg["scope"] != _RT_SCOPE_UNIVERSE:
            continue
        local = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
        by_index.setdefault(msg["index"], []).append(ip_interface(f"{local}/{msg['prefixlen']}"))
    return HostView(
        links=tuple(_link(msg, tuple(by_index.get(msg["index"], ()))) for msg in links),
        gateways4={
            dev: IPv4Address(gw or 0) for dev, gw in _defaults(routes4, names, with_bare=True)
        },
        gateways6={dev: IPv6Address(gw) for dev, gw in _defaults(routes6, names) if gw},
    )


def _link(msg: Any, addresses: tuple[IPInterface, ...]) -> HostLink:
    vlan_id = None
    info = msg.get_attr("IFLA_LINKINFO")
    if info is not None and info.get_attr("IFLA_INFO_KIND") == "vlan":
        data = info.get_attr("IFLA_INFO_DATA")
        vlan_id = data.get_attr("IFLA_VLAN_ID") if data is not None else None
    flags = msg["flags"]
    return HostLink(
        name=msg.get_attr("IFLA_IFNAME"),
        index=msg["index"],
        up=bool(flags & _IFF_UP),
        loopback=bool(flags & _IFF_LOOPBACK),
        mtu=msg.get_attr("IFLA_MTU"),
        vlan_id=vlan_id,
        addresses=addresses,
    )


def _defaults(
    routes: Iterable[Any], names: dict[int, str], *, with_bare: bool = False
) -> list[tuple[str, str | None]]:
    """(device, gateway) of each default route with a device, the first one per device in
    the kernel's order; routes without a gateway only ``with_bare``."""
    found: dict[str, str | None] = {}
    for msg in routes:
        if msg["dst_len"] != 0 or msg.get_attr("RTA_TABLE", msg["table"]) != _MAIN_TABLE:
            continue
        oif = msg.get_attr("RTA_OIF")
        if oif is None or oif not in names:
            continue
        gateway = msg.get_attr("RTA_GATEWAY")
        if gateway is None and not with_bare:
            continue
        found.setdefault(names[oif], gateway)
    return list(found.items())


def _socket_in(netns: str) -> socket.socket:
    """A netlink (route) socket of the namespace ``netns``.

    A socket belongs to the namespace it was made in, so a short-lived thread joins ``netns``
    (setns(2) moves only the calling thread) and makes it; this process never leaves its own.
    (pyroute2's own ``netns=`` forks a helper for this, about 9 ms a read, and creates a
    missing namespace.)"""
    made: list[socket.socket] = []
    failed: list[OSError] = []

    def enter() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            made.append(socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE))
        except OSError as exc:
            failed.append(exc)

    thread = threading.Thread(target=enter, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if failed or not made:
        reason = failed[0] if failed else "no socket"
        raise KernelError(f"cannot read network namespace {netns!r}: {reason}")
    return made[0]


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, _CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _iproute_class() -> Any:
    """pyroute2's synchronous ``IPRoute``, imported without the package's ``__init__``."""
    loaded = sys.modules.get("pyroute2.iproute.linux")
    if loaded is not None:
        return loaded.IPRoute
    with _IMPORT_LOCK:
        if "pyroute2" in sys.modules:
            return importlib.import_module("pyroute2.iproute.linux").IPRoute
        spec = importlib.util.find_spec("pyroute2")
        if spec is None or spec.submodule_search_locations is None:
            raise KernelError("pyroute2 is not installed: the host's links cannot be read")
        stand_in = types.ModuleType("pyroute2")
        stand_in.__path__ = list(spec.submodule_search_locations)
        sys.modules["pyroute2"] = stand_in
        try:
            return importlib.import_module("pyroute2.iproute.linux").IPRoute
        finally:
            if sys.modules.get("pyroute2") is stand_in:
                del sys.modules["pyroute2"]
