"""The receiving side of a probe run: real sockets in the target namespace, one JSON line each.

The listener binds every TCP and UDP port it is given (IPv4 and IPv6), joins the multicast
groups it is given, prints ``{"ready": true}`` once all are bound, and then one line per probe
received: protocol, port, source, destination address (from IP_PKTINFO, which tells a
broadcast or multicast from a unicast) and the DSCP the packet arrived with (IP_RECVTOS). TCP
peers get their token echoed back and stay connected until they close, so a sender can hold
connections open (``max_connections``). Echo requests need nothing: the kernel answers.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any, TextIO

__all__ = ["Group", "listen"]

# From linux/in.h and linux/in6.h; the socket module leaves some out.
IP_PKTINFO = 8
IP_RECVTOS = 13
IP_TOS = 1
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50
IPV6_RECVTCLASS = 66
IPV6_TCLASS = 67
ANY = bytes(4)  # INADDR_ANY: "any local address" inside ip_mreqn


@dataclass(frozen=True, slots=True)
class Group:
    address: str
    port: int


def _emit(out: TextIO, record: dict[str, Any]) -> None:
    out.write(json.dumps(record, sort_keys=True) + "\n")
    out.flush()


def _udp_socket(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVTOS, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVTCLASS, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


def _join(sock: socket.socket, group: str, ifindex: int) -> None:
    if ip_address(group).version == 4:
        mreqn = socket.inet_aton(group) + ANY + struct.pack("@i", ifindex)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
    else:
        mreq = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", ifindex)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)


def _udp_record(sock: socket.socket, port: int) -> dict[str, Any] | None:
    try:
        data, ancillary, _flags, source = sock.recvmsg(2048, 256)
    except BlockingIOError:
        return None
    record: dict[str, Any] = {
        "proto": "udp",
        "port": port,
        "src": source[0],
        "token": data.decode(errors="replace"),
    }
    for level, kind, payload in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
            record["dst"] = socket.inet_ntoa(payload[8:12])
        elif level == socket.IPPROTO_IP and kind == IP_TOS:
            record["dscp"] = payload[0] >> 2
        elif level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO:
            record["dst"] = socket.inet_ntop(socket.AF_INET6, payload[:16])
        elif level == socket.IPPROTO_IPV6 and kind == IPV6_TCLASS:
            record["dscp"] = struct.unpack("@i", payload[:4])[0] >> 2
    return record


def listen(
    tcp_ports: list[int],
    udp_ports: list[int],
    groups: list[Group],
    *,
    ifname: str | None = None,
    duration: float = 60.0,
    ipv6: bool = True,
    out: TextIO = sys.stdout,
) -> None:
    """Receive until ``duration`` passes or SIGTERM arrives."""
    stop = False

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    selector = selectors.DefaultSelector()
    # A probe listener is meant to hear every address of its namespace, broadcasts included.
    families = [(socket.AF_INET, "0.0.0.0")]  # noqa: S104
    if ipv6:
        families.append((socket.AF_INET6, "::"))
    held: list[socket.socket] = []
    for port in tcp_ports:
        for family, host in families:
            server = socket.socket(family, socket.SOCK_STREAM)
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            server.bind((host, port))
            server.listen(1024)
            server.setblocking(False)
            selector.register(server, selectors.EVENT_READ, ("accept", port))
    for port in udp_ports:
        for family, host in families:
            selector.register(_udp_socket(family, host, port), selectors.EVENT_READ, ("udp", port))
    ifindex = socket.if_nametoindex(ifname) if ifname else 0
    for group in groups:
        family = socket.AF_INET if ip_address(group.address).version == 4 else socket.AF_INET6
        sock = _udp_socket(family, group.address, group.port)
        _join(sock, group.address, ifindex)
        selector.register(sock, selectors.EVENT_READ, ("udp", group.port))
    _emit(out, {"ready": True})
    deadline = time.monotonic() + duration
    while not stop and time.monotonic() < deadline:
        for key, _events in selector.select(timeout=0.1):
            ready = key.fileobj
            if not isinstance(ready, socket.socket):
                continue
            kind, port = key.data[0], key.data[1]
            if kind == "accept":
                with contextlib.suppress(BlockingIOError):
                    conn, source = ready.accept()
                    conn.setblocking(False)
                    selector.register(conn, selectors.EVENT_READ, ("conn", port, source[0]))
                    held.append(conn)
            elif kind == "udp":
                record = _udp_record(ready, port)
                if record is not None:
                    _emit(out, record)
            else:
                try:
                    data = ready.recv(2048)
                except OSError:
                    data = b""
                if not data:
                    selector.unregister(ready)
                    ready.close()
                    continue
                token = data.decode(errors="replace")
                _emit(out, {"proto": "tcp", "port": port, "src": key.data[2], "token": token})
                with contextlib.suppress(OSError):
                    ready.sendall(b"ok:" + data)
    for key in list(selector.get_map().values()):
        with contextlib.suppress(OSError):
            key.fileobj.close()  # type: ignore[union-attr]
