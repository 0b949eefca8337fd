"""Gossip propagation benchmark, part (b): a real cluster of namespace VMs on one bridge.

    .venv/bin/python bench/gossip/cluster.py                 # 30 VMs, 3 changes (as root)
    .venv/bin/python bench/gossip/cluster.py --vms 40 --changes 5
    .venv/bin/python bench/gossip/cluster.py --serf        # and HashiCorp Serf, same namespaces

Each VM is a network namespace (netpersona.lab.topology) running bench/gossip/peer.py: the
agent's control channel (GossipNode + GossipTransport, real UDP on port 7480) with a certificate
signed by a key made for the run, and the seeds the metadata service would give it (the peers
answer's ``network.seeds``: up to 16 VMs of its network, netpersona.service.network). The run
waits until every VM holds every certificate, measures background traffic, then re-issues one
VM's certificate with a new persona at a time and waits until every other VM has accepted it.
Prints one JSON document: per change, the seconds until the first, median and last VM had it,
and bytes sent per VM (UDP payload + 28 bytes of IPv4/UDP header per datagram). Everything it
creates (namespaces, links, processes, the work directory) is removed at the end, also on
failure.

Bytes are counted twice: by the node itself (``tx_bytes`` + headers) and by an nftables counter
in each VM's output hook (whole IP packets from UDP port 7480). With ``--serf`` the same VMs
then run ``serf agent`` (Debian package ``serf``, memberlist's LAN profile: gossip every 200 ms
to 3 nodes, TCP push-pull every 30 s), joined through the first VM, and the same changes are made
as tag changes (``serf tags -set persona=...``); a VM has the news when its agent logs
``EventMemberUpdate`` for the origin (read from its output as it is written, before Serf's event
coalescing), and its bytes are the nftables counter of packets to or from port 7946.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from netpersona.certs.keyfiles import generate_signing_key
from netpersona.certs.keys import SigningKey
from netpersona.gossip import GossipConfig
from netpersona.gossip.config import IP_UDP_OVERHEAD
from netpersona.lab.topology import Topology, topology
from netpersona.records import Instance, Interface, Peer
from netpersona.service.network import NetworkIndex
from netpersona.testing.certs import key_set, make_certificate, signed

PEER = Path(__file__).with_name("peer.py")


def address(index: int) -> str:
    return f"10.78.{index // 200}.{11 + index % 200}"


def name(index: int) -> str:
    return f"vm{index:03d}"


def service_seeds(count: int) -> dict[str, list[str]]:
    """Each VM's seed addresses, as the metadata service picks them for one /16 network."""
    instances = {
        name(i): Instance(
            name(i), name(i), (address(i),), (Interface("eth0", (f"{address(i)}/16",)),)
        )
        for i in range(count)
    }

    def peer(instance_id: str) -> Peer:
        addresses = tuple(ip_address(a) for a in instances[instance_id].addresses)
        return Peer(instance_id, addresses, persona="api")  # a persona: it gossips

    network = NetworkIndex(instances, peer)
    return {vm: [str(a) for p in network.seeds(vm) for a in p.addresses] for vm in instances}


class Cluster:
    def __init__(self, topo: Topology, workdir: Path, count: int, config: GossipConfig) -> None:
        self.topo, self.workdir, self.count, self.config = topo, workdir, count, config
        self.key: SigningKey = generate_signing_key("bench")
        self.seq: dict[int, int] = {}
        self.procs: list[subprocess.Popen[str]] = []

    def path(self, index: int, kind: str) -> Path:
        return self.workdir / f"{name(index)}.{kind}"

    def issue(self, index: int, persona: str) -> float:
        """(Re-)issue VM ``index``'s certificate; the time it was handed to the VM."""
        self.seq[index] = self.seq.get(index, 0) + 1
        now = time.time()
        cert = make_certificate(
            name(index),
            (address(index),),
            persona=persona,
            seq=self.seq[index],
            issued_at=int(now),
            labels=(("lab", "bench"),),
            key=self.key,
        )
        token = self.path(index, "jwt")
        tmp = token.with_suffix(".tmp")
        tmp.write_text(signed(cert, self.key))
        os.replace(tmp, token)
        return now

    def start(self) -> None:
        (self.workdir / "keys.json").write_text(json.dumps(key_set(self.key).to_jwks()))
        seeds_of = service_seeds(self.count)
        for index in range(self.count):
            vm = self.topo.add_vm(name(index), f"{address(index)}/16")
            vm.run(["nft", "-f", "-"], input=COUNTERS_TABLE)
            self.issue(index, "api")
        for index in range(self.count):
            seeds = ",".join(seeds_of[name(index)])
            argv = [sys.executable, str(PEER), "--address", address(index)]
            argv += ["--keys", str(self.workdir / "keys.json")]
            argv += ["--token", str(self.path(index, "jwt")), "--seeds", seeds]
            argv += ["--log", str(self.path(index, "jsonl"))]
            argv += ["--counters", str(self.path(index, "counters"))]
            argv += ["--interval", str(self.config.interval)]
            argv += ["--bandwidth", str(self.config.bandwidth)]
            log = self.path(index, "stderr").open("w")
            self.procs.append(
                self.topo.vms[name(index)].popen(argv, stdout=log, stderr=subprocess.STDOUT)
            )

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait(10)

    def learned(self, index: int) -> list[dict[str, Any]]:
        try:
            lines = self.path(index, "jsonl").read_text().splitlines()
        except OSError:
            return []
        return [json.loads(line) for line in lines if line.endswith("}")]

    def counters(self) -> list[dict[str, float]]:
        out = []
        for index in range(self.count):
            try:
                out.append(json.loads(self.path(index, "counters").read_text()))
            except (OSError, ValueError):
                out.append({})
        return out

    def check_alive(self) -> None:
        for index, proc in enumerate(self.procs):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name(index)} exited: {self.path(index, 'stderr').read_text()[-2000:]}"
                )


# Bytes each VM sends on either channel, as the kernel counts them (whole IP packets).
COUNTERS_TABLE = """table inet npbench {
  counter gossip {}
  counter serf {}
  chain output {
    type filter hook output priority 0; policy accept;
    udp sport 7480 counter name "gossip"
    meta l4proto { tcp, udp } th sport 7946 counter name "serf"
    meta l4proto { tcp, udp } th dport 7946 th sport != 7946 counter name "serf"
  }
}
"""


def kernel_counters(cluster: Cluster, which: str) -> list[dict[str, float]]:
    """Per VM: {"t": now, "bytes": sent on channel ``which``}, from the nftables counter."""
    out = []
    for index in range(cluster.count):
        vm = cluster.topo.vms[name(index)]
        listing = vm.run(["nft", "-j", "list", "counter", "inet", "npbench", which]).stdout
        counter = next(o["counter"] for o in json.loads(listing)["nftables"] if "counter" in o)
        out.append({"t": time.time(), "bytes": float(counter["bytes"])})
    return out


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, cluster: Cluster) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        cluster.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def sent_bytes(counters: dict[str, float]) -> float:
    return counters.get("tx_bytes", 0) + IP_UDP_OVERHEAD * counters.get("tx_datagrams", 0)


def per_node_rate(before: list[dict[str, float]], after: list[dict[str, float]]) -> list[float]:
    rates = []
    for b, a in zip(before, after, strict=True):
        seconds = a.get("t", 0) - b.get("t", 0)
        rates.append((sent_bytes(a) - sent_bytes(b)) / seconds if seconds > 0 else 0.0)
    return rates


def kernel_rate(before: list[dict[str, float]], after: list[dict[str, float]]) -> list[float]:
    return [
        (a["bytes"] - b["bytes"]) / (a["t"] - b["t"]) for b, a in zip(before, after, strict=True)
    ]


def flip(personas: dict[int, str], origin: int) -> str:
    """A persona the origin does not hold now: every change is a real change."""
    personas[origin] = "web" if personas.get(origin, "api") == "api" else "api"
    return personas[origin]


def measure(cluster: Cluster, changes: int, background_seconds: float) -> dict[str, Any]:
    n = cluster.count
    personas: dict[int, str] = {}
    started = time.monotonic()
    wait_for(
        lambda: all(len({e["i"] for e in cluster.learned(i)}) >= n - 1 for i in range(n)),
        180,
        "every VM to hold every certificate",
        cluster,
    )
    settled = time.monotonic() - started
    time.sleep(2)
    before, kbefore = cluster.counters(), kernel_counters(cluster, "gossip")
    time.sleep(background_seconds)
    background = per_node_rate(before, cluster.counters())
    kernel_background = kernel_rate(kbefore, kernel_counters(cluster, "gossip"))
    results = []
    for change in range(changes):
        origin = (change * 7) % n
        # Let counters be rewritten so the window starts at the change.
        time.sleep(1.1)
        before, kbefore = cluster.counters(), kernel_counters(cluster, "gossip")
        persona = flip(personas, origin)
        issued = cluster.issue(origin, persona)
        seq = cluster.seq[origin]

        def arrivals(origin: int = origin, seq: int = seq, issued: float = issued) -> list[float]:
            times = []
            for index in range(n):
                if index == origin:
                    continue
                got = [
                    e["t"]
                    for e in cluster.learned(index)
                    if e["i"] == name(origin) and e["s"] >= seq
                ]
                if got:
                    times.append(min(got) - issued)
            return times

        wait_for(lambda: len(arrivals()) == n - 1, 120, f"change {change} to reach all", cluster)
        times = sorted(arrivals())
        time.sleep(1.1)
        after, kafter = cluster.counters(), kernel_counters(cluster, "gossip")
        window = [sent_bytes(a) - sent_bytes(b) for b, a in zip(before, after, strict=True)]
        kwindow = [a["bytes"] - b["bytes"] for b, a in zip(kbefore, kafter, strict=True)]
        seconds = statistics.mean(
            a.get("t", 0) - b.get("t", 0) for b, a in zip(before, after, strict=True)
        )
        results.append(
            {
                "origin": name(origin),
                "persona": persona,
                "first_s": round(times[0], 3),
                "median_s": round(statistics.median(times), 3),
                "all_s": round(times[-1], 3),
                "rounds_to_all": round(times[-1] / cluster.config.interval, 1),
                "window_s": round(seconds, 2),
                "bytes_per_node_in_window_mean": round(statistics.mean(window)),
                "bytes_per_node_in_window_max": round(max(window)),
                "bytes_per_s_per_node_mean": round(statistics.mean(window) / seconds, 1),
                "kernel_bytes_per_node_in_window_mean": round(statistics.mean(kwindow)),
                "kernel_bytes_per_node_in_window_max": round(max(kwindow)),
            }
        )
    return {
        "settled_s": round(settled, 2),
        "background_bytes_per_s_per_node": {
            "mean": round(statistics.mean(background), 1),
            "max": round(max(background), 1),
            "seconds": background_seconds,
            "kernel_mean": round(statistics.mean(kernel_background), 1),
        },
        "changes": results,
    }


class SerfCluster:
    """``serf agent`` in each VM, its output read line by line as it is written."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.procs: list[subprocess.Popen[str]] = []
        self.joined: list[set[str]] = [set() for _ in range(cluster.count)]
        # Per VM: (time seen, node) for each EventMemberUpdate line.
        self.updates: list[list[tuple[float, str]]] = [[] for _ in range(cluster.count)]
        self.lock = threading.Lock()

    def start(self) -> None:
        for index in range(self.cluster.count):
            argv = ["serf", "agent", f"-node={name(index)}", f"-bind={address(index)}:7946"]
            argv += [f"-rpc-addr={address(index)}:7373", "-tag", "persona=api"]
            argv += ["-log-level=info"]
            if index:
                argv += [f"-retry-join={address(0)}:7946", "-retry-interval=1s"]
            proc = self.cluster.topo.vms[name(index)].popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1
            )
            self.procs.append(proc)
            threading.Thread(target=self._read, args=(index, proc), daemon=True).start()
            if index == 0:
                time.sleep(0.5)  # the others join through this one

    def _read(self, index: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen = time.time()
            _, found, rest = line.partition("serf: EventMember")
            words = rest.replace(":", " ").split()
            if not found or len(words) < 2:
                continue
            with self.lock:
                if words[0] == "Join":
                    self.joined[index].add(words[1])
                elif words[0] == "Update":
                    self.updates[index].append((seen, words[1]))

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait(10)

    def check_alive(self) -> None:
        for index, proc in enumerate(self.procs):
            if proc.poll() is not None:
                raise RuntimeError(f"serf on {name(index)} exited ({proc.returncode})")

    def set_tag(self, index: int, persona: str) -> float:
        vm = self.cluster.topo.vms[name(index)]
        started = time.time()
        vm.run(["serf", "tags", f"-rpc-addr={address(index)}:7373", "-set", f"persona={persona}"])
        return started


def measure_serf(cluster: Cluster, changes: int, background_seconds: float) -> dict[str, Any]:
    n = cluster.count
    personas: dict[int, str] = {}
    serf = SerfCluster(cluster)
    serf.start()
    try:
        started = time.monotonic()

        def everyone_joined() -> bool:
            serf.check_alive()
            with serf.lock:
                return all(len(j - {name(i)}) >= n - 1 for i, j in enumerate(serf.joined))

        wait_for(
            everyone_joined,
            180,
            "every serf agent to see every member",
            cluster,
        )
        settled = time.monotonic() - started
        time.sleep(2)
        kbefore = kernel_counters(cluster, "serf")
        time.sleep(background_seconds)
        background = kernel_rate(kbefore, kernel_counters(cluster, "serf"))
        results = []
        for change in range(changes):
            origin = (change * 7) % n
            persona = flip(personas, origin)
            time.sleep(1.1)
            kbefore = kernel_counters(cluster, "serf")
            issued = serf.set_tag(origin, persona)

            def arrivals(origin: int = origin, issued: float = issued) -> list[float]:
                with serf.lock:
                    return [
                        min(
                            t for t, node in serf.updates[i] if node == name(origin) and t >= issued
                        )
                        - issued
                        for i in range(n)
                        if i != origin
                        and any(node == name(origin) and t >= issued for t, node in serf.updates[i])
                    ]

            wait_for(
                lambda: len(arrivals()) == n - 1, 120, f"serf change {change} to reach all", cluster
            )
            times = sorted(arrivals())
            time.sleep(1.1)
            kafter = kernel_counters(cluster, "serf")
            window = [a["bytes"] - b["bytes"] for b, a in zip(kbefore, kafter, strict=True)]
            seconds = statistics.mean(a["t"] - b["t"] for b, a in zip(kbefore, kafter, strict=True))
            results.append(
                {
                    "origin": name(origin),
                    "persona": persona,
                    "first_s": round(times[0], 3),
                    "median_s": round(statistics.median(times), 3),
                    "all_s": round(times[-1], 3),
                    "window_s": round(seconds, 2),
                    "kernel_bytes_per_node_in_window_mean": round(statistics.mean(window)),
                    "kernel_bytes_per_node_in_window_max": round(max(window)),
                    "kernel_bytes_per_s_per_node_mean": round(statistics.mean(window) / seconds, 1),
                }
            )
    finally:
        serf.stop()
    return {
        "settled_s": round(settled, 2),
        "background_bytes_per_s_per_node": {
            "kernel_mean": round(statistics.mean(background), 1),
            "kernel_max": round(max(background), 1),
            "seconds": background_seconds,
        },
        "changes": results,
    }


def run(
    vms: int, changes: int, background: float, config: GossipConfig, *, serf: bool = False
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="np-gossip-cluster-"))
    try:
        with topology(f"npbg{os.getpid() % 100000}", gateway="10.78.0.1/16") as topo:
            cluster = Cluster(topo, workdir, vms, config)
            try:
                cluster.start()
                measured = measure(cluster, changes, background)
                if serf:
                    measured["serf"] = measure_serf(cluster, changes, background)
            finally:
                cluster.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "benchmark": "gossip-namespace-cluster",
        "vms": vms,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "config": {
            "interval": config.interval,
            "bandwidth": config.bandwidth,
            "fanout": config.fanout,
        },
        **measured,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=30)
    parser.add_argument("--changes", type=int, default=3)
    parser.add_argument("--background", type=float, default=10.0, help="seconds measured idle")
    parser.add_argument("--interval", type=float, default=GossipConfig().interval)
    parser.add_argument("--bandwidth", type=int, default=GossipConfig().bandwidth)
    parser.add_argument("--serf", action="store_true", help="also run HashiCorp Serf (part c)")
    args = parser.parse_args(argv)
    if args.serf and shutil.which("serf") is None:
        parser.error("--serf: no serf binary on PATH (apt-get install serf)")
    config = GossipConfig(interval=args.interval, bandwidth=args.bandwidth)
    result = run(args.vms, args.changes, args.background, config, serf=args.serf)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
