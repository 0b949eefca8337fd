"""Runs inside the lab's hypervisor namespace: change a persona, time until packets obey.

For each round the persona allows one new TCP port. The time starts when the admin API has
acknowledged the change and stops, per VM, when a SYN to that port from the hypervisor is
answered (a RST: the VM's firewall now lets it through) instead of silently dropped.

Every VM is probed at once: a fresh non-blocking SYN every :data:`PROBE_INTERVAL` seconds to
each VM still dropping, all waited on together, and a sample ends when an answer arrives. A
probe that waits for its own timeout before the next one (e.g. 20 ms, VM after VM) would add
up to that timeout times the number of VMs to every sample, and be a tail of its own.
"""

from __future__ import annotations

import errno
import json
import resource
import selectors
import socket
import sys
import time

import httpx

PERSONA = {
    "communication_mode": "unicast",
    "security_profile": "medium",
    "allowed_protocols": ["icmp"],
    "priority": 3,
}
# How often a VM that still drops is sent a fresh SYN: the samples' granularity.
PROBE_INTERVAL = 0.005
# A SYN with no answer after this long was dropped (a veth answers within a millisecond).
PROBE_LIFETIME = 0.2
ROUND_TIMEOUT = 30.0


def wait_enforced(addresses: list[str], port: int, acked: float) -> dict[str, float]:
    """Seconds from ``acked`` until each VM answered a SYN to ``port`` (the ones that did)."""
    answered: dict[str, float] = {}
    selector = selectors.DefaultSelector()
    next_probe = dict.fromkeys(addresses, 0.0)
    probes: dict[socket.socket, tuple[str, float]] = {}
    try:
        while len(answered) < len(addresses):
            now = time.monotonic()
            if now - acked > ROUND_TIMEOUT:
                break
            for address in addresses:
                if address not in answered and now >= next_probe[address]:
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    sock.setblocking(False)
                    sock.connect_ex((address, port))
                    selector.register(sock, selectors.EVENT_WRITE, sock)
                    probes[sock] = (address, now)
                    next_probe[address] = now + PROBE_INTERVAL
            for sock, (address, sent) in list(probes.items()):
                if now - sent > PROBE_LIFETIME or address in answered:
                    selector.unregister(sock)
                    sock.close()
                    del probes[sock]
            for key, _ in selector.select(PROBE_INTERVAL):
                sock = key.data
                address, _ = probes.pop(sock)
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                selector.unregister(sock)
                sock.close()
                # Refused: the SYN got through and the closed port answered (0: something
                # listens there, as good).
                if error in (0, errno.ECONNREFUSED) and address not in answered:
                    answered[address] = time.monotonic() - acked
    finally:
        for sock in probes:
            sock.close()
        selector.close()
    return answered


def main() -> None:
    url, token, persona, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    addresses = sys.argv[5:]
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    samples: list[float] = []
    trace: list[dict[str, object]] = []
    timeouts = 0
    began = time.monotonic()
    for index in range(rounds):
        port = 20000 + index
        body = {"network_persona": {**PERSONA, "allowed_protocols": ["icmp", f"tcp/{port}"]}}
        sent = time.monotonic()
        response = client.put(f"/v1/admin/personas/{persona}", json=body)
        response.raise_for_status()
        acked, acked_wall = time.monotonic(), time.time()
        answered = wait_enforced(addresses, port, acked)
        samples += answered.values()
        timeouts += len(addresses) - len(answered)
        trace.append(
            {
                "port": port,
                "version": response.json().get("version"),
                "write_s": acked - sent,
                "acked_wall": acked_wall,
                "answered_s": answered,
            }
        )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # The probing's own cost: the driver shares the CPUs with what it measures.
    cpu_share = (usage.ru_utime + usage.ru_stime) / (time.monotonic() - began)
    print(
        json.dumps(
            {"samples": samples, "timeouts": timeouts, "rounds": trace, "cpu_share": cpu_share}
        )
    )


if __name__ == "__main__":
    main()
