"""Helpers for the kernel tests that count packets: apply a persona in the lab's VM, read its
drop counters, count what gets through with a probe table of the test's own, and send
traffic the probe tool cannot (a frame with any source, a UDP blast for a rate)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from netpersona.compiler import compile_plan
from netpersona.dataplane import Applier, LinuxKernel, StateStore
from netpersona.dataplane.drift import drop_counters
from netpersona.facts import HostFacts
from netpersona.model import parse_persona_text
from netpersona.testing.netns import Netns

__all__ = ["apply", "blast", "drops", "probe_counter", "probe_table", "send_frame"]


def apply(ns: Netns, tmp_path: Path, text: str, facts: HostFacts) -> Applier:
    applier = Applier(LinuxKernel(ns.name), StateStore(tmp_path / "state"))
    applier.apply(compile_plan(parse_persona_text(text), facts), "test")
    return applier


def drops(applier: Applier) -> dict[str, int]:
    return {name: packets for name, (packets, _bytes) in drop_counters(applier.kernel).items()}


def probe_table(ns: Netns, hook: str, priority: int, rules: dict[str, str]) -> None:
    """Table ``inet probe``: one named counter per rule, counted on ``hook`` at ``priority``
    (after the persona's chains when higher than 0, so it counts what they let through)."""
    body = "".join(f"  counter {name} {{}}\n" for name in rules)
    chain = "".join(f"    {match} counter name {name}\n" for name, match in rules.items())
    ns.run(
        ["nft", "-f", "-"],
        input=(
            "table inet probe\ndelete table inet probe\ntable inet probe {\n"
            f"{body}  chain c {{ type filter hook {hook} priority {priority}; policy accept;\n"
            f"{chain}  }}\n}}\n"
        ),
    )


def probe_counter(ns: Netns, name: str) -> tuple[int, int]:
    """(packets, bytes) of a counter of table ``inet probe``."""
    listing = json.loads(ns.run(["nft", "-j", "list", "counter", "inet", "probe", name]).stdout)
    body = next(o["counter"] for o in listing["nftables"] if "counter" in o)
    return int(body["packets"]), int(body["bytes"])


_FRAME = r"""
import socket, struct, sys
ifname, src, dst, sport, dport = sys.argv[1:6]
def checksum(data):
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
payload = b"netpersona-frame"
udp = struct.pack("!HHHH", int(sport), int(dport), 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton(src), socket.inet_aton(dst))
ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
    sock.bind((ifname, 0))
    mac = sock.getsockname()[4]
    sock.send(b"\xff" * 6 + mac + b"\x08\x00" + ip + udp)
"""


def send_frame(ns: Netns, ifname: str, src: str, dst: str, sport: int, dport: int) -> None:
    """One IPv4/UDP packet with any source address, broadcast on the link (AF_PACKET: the
    sender's routing and source selection play no part, as for a DHCP client's discover)."""
    ns.run([sys.executable, "-c", _FRAME, ifname, src, dst, str(sport), str(dport)])


_BLAST = r"""
import errno, json, socket, sys, time
dst = sys.argv[1]
port, size, limit = int(sys.argv[2]), int(sys.argv[4]), int(sys.argv[5])
seconds = float(sys.argv[3])
family = socket.AF_INET6 if ":" in dst else socket.AF_INET
sock = socket.socket(family, socket.SOCK_DGRAM)
data = b"x" * size
sent = 0
start = time.monotonic()
while time.monotonic() - start < seconds and (limit == 0 or sent < limit):
    try:
        sock.sendto(data, (dst, port))
        sent += 1
    except OSError as exc:
        if exc.errno not in (errno.ENOBUFS, errno.EAGAIN):
            raise
print(json.dumps({"sent": sent, "elapsed": time.monotonic() - start}))
"""


def blast(
    ns: Netns, dst: str, port: int, *, seconds: float, size: int = 1000, limit: int = 0
) -> tuple[int, float]:
    """UDP datagrams of ``size`` bytes as fast as the sender can, for ``seconds`` or until
    ``limit`` are sent: (datagrams sent, seconds it took)."""
    argv = [sys.executable, "-c", _BLAST, dst, str(port), str(seconds), str(size), str(limit)]
    done = json.loads(ns.run(argv, timeout=60 + seconds).stdout)
    return int(done["sent"]), float(done["elapsed"])
