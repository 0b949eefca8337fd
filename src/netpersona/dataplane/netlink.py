"""The host's links, addresses and default routes, read in-process over rtnetlink (pyroute2).

One netlink session per read (three dumps: links, addresses, main-table routes of each family),
instead of one ``ip -j`` process per question. :func:`read_host` returns what
:func:`~netpersona.dataplane.host_probe.gather_facts` needs, plus each link's MTU and VLAN id.

The requests and the reading of the replies are this module's (a netlink dump is a request
and messages up to ``NLMSG_DONE``); pyroute2 decodes the messages. It is imported on first use,
and only its three message codecs (``ifinfmsg``, ``ifaddrmsg``, ``rtmsg``): its ``IPRoute``
brings an asyncio transport, every traffic-control codec and a mock kernel (about 160 ms and
5 MB), and the package's ``__init__`` every pyroute2 module (NDB, IPDB, wireless, ...: about
20 MB). The package is stood in for while the codecs load (see :func:`_codecs`); a later
``import pyroute2`` elsewhere still runs the real ``__init__``.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import itertools
import os
import socket
import struct
import sys
import threading
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_interface
from typing import Any

from netpersona.errors import KernelError
from netpersona.facts import IPInterface

__all__ = ["HostLink", "HostView", "read_host", "setns_net"]

_AF_INET, _AF_INET6 = 2, 10
_MAIN_TABLE = 254
_IFF_UP, _IFF_LOOPBACK = 0x1, 0x8
_RT_SCOPE_UNIVERSE = 0

_CLONE_NEWNET = 0x40000000
_NETLINK_ROUTE = 0
_AF_UNSPEC = 0
_RTM_GETLINK, _RTM_GETADDR, _RTM_GETROUTE = 18, 22, 26  # replies: RTM_NEW*, two less
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLM_F_REQUEST, _NLM_F_DUMP, _NLM_F_DUMP_INTR = 0x1, 0x300, 0x10
_HEADER = struct.Struct("=IHHII")  # length, type, flags, sequence, port
_ERROR = struct.Struct("=i")
_RECV_BYTES = 1 << 16
_TIMEOUT_S = 10.0
_DUMP_TRIES = 3
_SEQUENCE = itertools.count(1)

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
    codecs = _codecs()
    sock = (
        _socket_in(netns)
        if netns
        else socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE)
    )
    try:
        sock.settimeout(_TIMEOUT_S)
        links = _dump(sock, codecs.ifinfmsg, _RTM_GETLINK, _AF_UNSPEC)
        addrs = _dump(sock, codecs.ifaddrmsg, _RTM_GETADDR, _AF_UNSPEC)
        routes4 = _dump(sock, codecs.rtmsg, _RTM_GETROUTE, _AF_INET)
        routes6 = _dump(sock, codecs.rtmsg, _RTM_GETROUTE, _AF_INET6)
    except OSError as exc:
        where = f"network namespace {netns!r}" if netns else "this namespace"
        raise KernelError(f"netlink read of the links of {where} failed: {exc}") from exc
    finally:
        sock.close()
    names = {msg["index"]: msg.get_attr("IFLA_IFNAME") for msg in links}
    by_index: dict[int, list[IPInterface]] = {}
    for msg in addrs:
        if msg["scope"] != _RT_SCOPE_UNIVERSE:
            continue
        local = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
        by_index.setdefault(msg["index"], []).append(ip_interface(f"{local}/{msg['prefixlen']}"))
    view = HostView(
        links=tuple(_link(msg, tuple(by_index.get(msg["index"], ()))) for msg in links),
        gateways4={
            dev: IPv4Address(gw or 0) for dev, gw in _defaults(routes4, names, with_bare=True)
        },
        gateways6={dev: IPv6Address(gw) for dev, gw in _defaults(routes6, names) if gw},
    )
    # pyroute2's decoded messages hold reference cycles (each attribute points back at its
    # message): about a thousand objects a read that only the cyclic collector frees. Freed
    # here, while they are young, it is cheap; left, they are found by the collections the
    # compile and the apply set off, which then cost more.
    del links, addrs, routes4, routes6
    gc.collect(1)
    return view


def _dump(sock: socket.socket, codec: Any, kind: int, family: int) -> list[Any]:
    """Every message of one dump request (``kind``) for ``family``, decoded by ``codec``.

    A dump the kernel marks interrupted (the table changed while it was read) is asked again."""
    for _ in range(_DUMP_TRIES):
        request = codec()
        request["family"] = family
        request["header"]["type"] = kind
        request["header"]["flags"] = _NLM_F_REQUEST | _NLM_F_DUMP
        request["header"]["sequence_number"] = seq = next(_SEQUENCE)
        request.encode()
        sock.send(request.data)
        messages, interrupted = _replies(sock, codec, kind - 2, seq)
        if not interrupted:
            return messages
    raise OSError(f"netlink dump {kind} interrupted {_DUMP_TRIES} times in a row")


def _replies(sock: socket.socket, codec: Any, reply: int, seq: int) -> tuple[list[Any], bool]:
    messages: list[Any] = []
    interrupted = False
    while True:
        data, _, flags, _ = sock.recvmsg(_RECV_BYTES)
        if flags & socket.MSG_TRUNC:
            raise OSError("netlink reply larger than the receive buffer")
        offset = 0
        while offset + _HEADER.size <= len(data):
            length, kind, msg_flags, msg_seq, _ = _HEADER.unpack_from(data, offset)
            if length < _HEADER.size or offset + length > len(data):
                raise OSError(f"malformed netlink message (length {length})")
            if msg_seq == seq:
                interrupted |= bool(msg_flags & _NLM_F_DUMP_INTR)
                if kind == _NLMSG_DONE:
                    return messages, interrupted
                if kind == _NLMSG_ERROR:
                    (error,) = _ERROR.unpack_from(data, offset + _HEADER.size)
                    if error:
                        raise OSError(-error, os.strerror(-error))
                elif kind == reply:
                    message = codec(data[offset : offset + length])
                    message.decode()
                    messages.append(message)
            offset += (length + 3) & ~3


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
    (pyroute2's ``IPRoute(netns=...)`` forks a helper for this, about 9 ms a read, and creates
    a missing namespace.)"""
    made: list[socket.socket] = []
    failed: list[OSError] = []

    def enter() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                setns_net(fd)
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


def setns_net(fd: int) -> None:
    """Move the calling thread into the network namespace open as ``fd``."""
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, _CLONE_NEWNET)
        return
    import ctypes  # noqa: PLC0415 (only here: the agent reads its own namespace)

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _codecs() -> types.SimpleNamespace:
    """pyroute2's link, address and route message codecs, imported without the package's
    ``__init__``."""
    with _IMPORT_LOCK:
        stand_in = None
        if "pyroute2" not in sys.modules:
            spec = importlib.util.find_spec("pyroute2")
            if spec is None or spec.submodule_search_locations is None:
                raise KernelError("pyroute2 is not installed: the host's links cannot be read")
            stand_in = types.ModuleType("pyroute2")
            stand_in.__path__ = list(spec.submodule_search_locations)
            sys.modules["pyroute2"] = stand_in
        try:
            rtnl = "pyroute2.netlink.rtnl"
            return types.SimpleNamespace(
                ifinfmsg=importlib.import_module(f"{rtnl}.ifinfmsg").ifinfmsg,
                ifaddrmsg=importlib.import_module(f"{rtnl}.ifaddrmsg").ifaddrmsg,
                rtmsg=importlib.import_module(f"{rtnl}.rtmsg").rtmsg,
            )
        finally:
            if stand_in is not None and sys.modules.get("pyroute2") is stand_in:
                del sys.modules["pyroute2"]
