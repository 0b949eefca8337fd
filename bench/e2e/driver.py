"""Runs inside the lab's hypervisor namespace: change a persona, time until packets obey.

For each round the persona allows one new TCP port. The time starts when the admin API has
acknowledged the change and stops, per VM, when a SYN to that port from the hypervisor is
answered (a RST: the VM's firewall now lets it through) instead of silently dropped.
"""

from __future__ import annotations

import json
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


def enforced(address: str, port: int) -> bool:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(0.02)
    try:
        sock.connect((address, port))
    except ConnectionRefusedError:
        return True  # the SYN got through and the closed port answered
    except OSError:
        return False  # dropped: the old persona is still in force
    finally:
        sock.close()
    return True


def main() -> None:
    url, token, persona, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    addresses = sys.argv[5:]
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    samples: list[float] = []
    timeouts = 0
    for index in range(rounds):
        port = 20000 + index
        body = {"network_persona": {**PERSONA, "allowed_protocols": ["icmp", f"tcp/{port}"]}}
        response = client.put(f"/v1/admin/personas/{persona}", json=body)
        response.raise_for_status()
        acked = time.monotonic()
        pending = set(addresses)
        while pending and time.monotonic() - acked < 30:
            for address in sorted(pending):
                if enforced(address, port):
                    samples.append(time.monotonic() - acked)
                    pending.discard(address)
        timeouts += len(pending)
    print(json.dumps({"samples": samples, "timeouts": timeouts}))


if __name__ == "__main__":
    main()
