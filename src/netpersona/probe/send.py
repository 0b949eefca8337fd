"""The sending side of a probe run: each probe on its own thread, all at once.

A probe is a mapping:

    {"id": "pg-in", "proto": "tcp", "dst": "10.0.0.5", "port": 5432}
    {"id": "ping", "proto": "icmp", "dst": "10.0.0.5", "count": 1, "vary_id": false}
    {"id": "bc", "proto": "udp", "dst": "10.0.0.255", "port": 5000, "broadcast": true}
    {"id": "mc", "proto": "udp", "dst": "239.1.1.1", "port": 5001, "ifname": "eth0"}
    {"id": "spoof", "proto": "udp", "dst": "10.0.0.5", "port": 5001, "src": "10.9.9.9"}
    {"id": "conns", "proto": "tcp", "dst": "10.0.0.5", "port": 5432, "count": 10}

and the result says what the sender saw: for TCP whether the handshake completed and the
listener echoed the token (``established`` counts connections, all held open until every
probe is done); for ICMP how many echo replies came back; for UDP only that it was sent (the
listener's record says whether it arrived).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from ipaddress import ip_address
from typing import Any, TextIO

__all__ = ["hold_session", "run_probes"]

Probe = dict[str, Any]
DEFAULT_TIMEOUT = 1.0


def _family(dst: str) -> socket.AddressFamily:
    return socket.AF_INET if ip_address(dst).version == 4 else socket.AF_INET6


def _tcp(probe: Probe, hold: list[socket.socket]) -> dict[str, Any]:
    count = int(probe.get("count", 1))
    timeout = float(probe.get("timeout", DEFAULT_TIMEOUT))
    established = 0
    for index in range(count):
        sock = socket.socket(_family(probe["dst"]), socket.SOCK_STREAM)
        sock.settimeout(timeout)
        token = f"{probe['id']}/{index}".encode()
        try:
            sock.connect((probe["dst"], int(probe["port"])))
            sock.sendall(token)
            reply = sock.recv(256)
        except OSError:
            sock.close()
            continue
        if reply == b"ok:" + token:
            established += 1
            hold.append(sock)
        else:
            sock.close()
    return {"ok": established == count, "established": established}


def _udp(probe: Probe) -> dict[str, Any]:
    family = _family(probe["dst"])
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        if probe.get("src"):
            # Any address of the sender's namespace (one added just for the test, say).
            sock.bind((probe["src"], 0))
        if probe.get("broadcast"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if probe.get("ifname"):
            ifindex = socket.if_nametoindex(probe["ifname"])
            if family == socket.AF_INET:
                mreqn = bytes(8) + struct.pack("@i", ifindex)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
        try:
            for index in range(int(probe.get("count", 1))):
                token = f"{probe['id']}/{index}".encode()
                sock.sendto(token, (probe["dst"], int(probe["port"])))
        except OSError as exc:
            return {"ok": False, "error": exc.strerror or str(exc)}
    return {"ok": True}


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _icmp(probe: Probe) -> dict[str, Any]:
    """Echo requests on a raw socket (RFC 792 / RFC 4443); counts matching replies."""
    dst = probe["dst"]
    v4 = ip_address(dst).version == 4
    count = int(probe.get("count", 1))
    timeout = float(probe.get("timeout", DEFAULT_TIMEOUT))
    ident = (os.getpid() ^ threading.get_ident()) & 0xFFFF
    # Conntrack keys an echo flow by identifier (RFC 792), so ping(8)'s fixed identifier makes
    # one flow of many requests; "vary_id" makes each request a flow of its own.
    vary = bool(probe.get("vary_id"))
    proto = socket.IPPROTO_ICMP if v4 else socket.IPPROTO_ICMPV6
    request, reply_type = (8, 0) if v4 else (128, 129)
    with socket.socket(_family(dst), socket.SOCK_RAW, proto) as sock:
        for seq in range(count):
            ident_now = (ident + seq) & 0xFFFF if vary else ident
            body = struct.pack("!BBHHH", request, 0, 0, ident_now, seq) + b"netpersona-probe"
            if v4:  # the kernel fills in the ICMPv6 checksum itself (RFC 3542)
                body = body[:2] + struct.pack("!H", _checksum(body)) + body[4:]
            sock.sendto(body, (dst, 0))
        replies: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(replies) < count and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                packet, source = sock.recvfrom(2048)
            except OSError:
                break
            icmp = packet[(packet[0] & 0x0F) * 4 :] if v4 else packet
            if len(icmp) < 8 or ip_address(source[0]) != ip_address(dst):
                continue
            kind, _code, _sum, got_id, seq = struct.unpack("!BBHHH", icmp[:8])
            if kind == reply_type and got_id == ((ident + seq) & 0xFFFF if vary else ident):
                replies.add(seq)
    return {"ok": len(replies) == count, "replies": len(replies)}


def run_probes(probes: list[Probe]) -> list[dict[str, Any]]:
    """Run every probe concurrently; results in the order given, each with its ``id``."""
    results: list[dict[str, Any]] = [{} for _ in probes]
    hold: list[socket.socket] = []

    def one(index: int, probe: Probe) -> None:
        try:
            if probe["proto"] == "tcp":
                result = _tcp(probe, hold)
            elif probe["proto"] == "udp":
                result = _udp(probe)
            elif probe["proto"] == "icmp":
                result = _icmp(probe)
            else:
                result = {"ok": False, "error": f"unknown proto {probe['proto']!r}"}
        except OSError as exc:
            result = {"ok": False, "error": str(exc)}
        results[index] = {"id": probe.get("id", str(index)), **result}

    threads = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(probes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for sock in hold:
        with contextlib.suppress(OSError):
            sock.close()
    return results


def hold_session(dst: str, port: int, lines: TextIO, out: TextIO, timeout: float = 2.0) -> None:
    """One TCP connection kept open: each input line is sent, and ``ok`` or ``lost`` printed
    as the listener echoes it or not. Shows whether an established flow survives a change."""
    with socket.create_connection((dst, port), timeout=timeout) as sock:
        out.write("connected\n")
        out.flush()
        for line in lines:
            token = line.strip().encode()
            try:
                sock.sendall(token)
                reply = sock.recv(256)
            except OSError:
                reply = b""
            out.write("ok\n" if reply == b"ok:" + token else "lost\n")
            out.flush()
