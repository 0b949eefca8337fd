"""What a lab run created, written down as it creates it, so that exactly that is removed.

Removing a lab by name (every namespace starting with ``nplab-``) also removes whatever else
happens to share the name: other runs' namespaces and the processes in them. Instead each run
appends to its ledger (one JSON object a line, flushed and fsynced before it goes on):

- a namespace or a link: an ``intent`` entry *before* ``ip`` creates it, a ``created`` entry
  after (for a namespace, with its nsfs identity). A crash in between leaves an intent whose
  name holds the run's random id, so a namespace found under that name can only be this run's;
- a process: its pid and its start time (``/proc/<pid>/stat`` field 22), right after it is
  started. It only ever runs inside a namespace of the run, so one killed before it was
  written down is still found there, by the namespace's identity;
- a PostgreSQL cluster (``--replicas``): its directory before ``initdb`` makes it, its
  server's pid and start time once it runs (the server runs in the hypervisor's namespace too).

:meth:`Ledger.undo` kills the recorded processes whose pid *and* start time still match, then
stops the recorded PostgreSQL servers (SIGQUIT, an immediate shutdown that
takes their backends along; SIGKILL if that does not do) and removes their directories, then
anything left in the recorded namespaces (matched by identity, never by name), deletes the
recorded links and namespaces, and forgets the ledger once nothing recorded is left. A run
killed with SIGKILL leaves its ledger behind for the next ``lab down`` or ``lab up``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from netpersona.system.command import run
from netpersona.system.netns import (
    NetnsIdentity,
    kill_process,
    netns_identity,
    process_running,
    process_start_time,
    processes_in,
)

__all__ = ["LEDGER", "Ledger", "Removal"]

LEDGER = "ledger.jsonl"
GONE_TIMEOUT = 10.0  # seconds a SIGKILLed process may take to disappear from /proc

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class _Namespace:
    name: str
    identity: NetnsIdentity | None  # None: intended, never confirmed (a crash in between)


@dataclass(frozen=True, slots=True)
class _Link:
    netns: str
    name: str


@dataclass(frozen=True, slots=True)
class _Process:
    pid: int
    start_time: int
    netns: str


@dataclass(frozen=True, slots=True)
class _Cluster:
    root: str
    pid: int | None = None  # None: its directory is recorded, its server not (yet)
    start_time: int | None = None


@dataclass
class Removal:
    """What :meth:`Ledger.undo` did: the namespaces removed, and any that had to be left."""

    removed: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)


@dataclass
class Ledger:
    path: Path
    namespaces: dict[str, _Namespace] = field(default_factory=dict)
    links: list[_Link] = field(default_factory=list)
    processes: list[_Process] = field(default_factory=list)
    clusters: dict[str, _Cluster] = field(default_factory=dict)

    @classmethod
    def load(cls, workdir: Path) -> Ledger:
        """The ledger in ``workdir`` (empty if there is none). A line torn by a crash is the
        last one, about something not yet created, and is skipped."""
        ledger = cls(workdir / LEDGER)
        try:
            lines = ledger.path.read_text().splitlines()
        except FileNotFoundError:
            return ledger
        for line in lines:
            try:
                ledger._apply(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue
        return ledger

    def _apply(self, entry: dict[str, Any]) -> None:
        kind = entry["kind"]
        if kind == "netns":
            identity = entry.get("identity")
            self.namespaces[entry["name"]] = _Namespace(
                entry["name"], (int(identity[0]), int(identity[1])) if identity else None
            )
        elif kind == "link":
            link = _Link(entry["netns"], entry["name"])
            if link not in self.links:
                self.links.append(link)
        elif kind == "process":
            self.processes.append(_Process(int(entry["pid"]), int(entry["start"]), entry["netns"]))
        elif kind == "postgres":
            pid, start = entry.get("pid"), entry.get("start")
            self.clusters[entry["root"]] = _Cluster(
                entry["root"],
                None if pid is None else int(pid),
                None if start is None else int(start),
            )

    def _write(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as out:
            out.write(json.dumps(entry) + "\n")
            out.flush()
            os.fsync(out.fileno())
        self._apply(entry)

    # --- recording, around each creation
    def create_netns(self, name: str) -> None:
        """``ip netns add name``, written down before and after."""
        self._write({"kind": "netns", "name": name})
        run(["ip", "netns", "add", name])
        self._write({"kind": "netns", "name": name, "identity": netns_identity(name)})

    def create_link(self, netns: str, name: str, argv: Sequence[str]) -> None:
        """Run ``argv``, which creates the link ``name`` in ``netns``, written down before.

        A veth pair is recorded by the end made in ``netns``: deleting it deletes both ends.
        """
        self._write({"kind": "link", "netns": netns, "name": name})
        run(argv)

    def started(self, pid: int, netns: str) -> None:
        """Write down a process just started (and not yet reaped) in ``netns``."""
        start = process_start_time(pid)
        if start is not None:
            self._write({"kind": "process", "pid": pid, "start": start, "netns": netns})

    def cluster_intent(self, root: Path) -> None:
        """Write down the directory a PostgreSQL cluster is about to be made in."""
        self._write({"kind": "postgres", "root": str(root)})

    def cluster_started(self, root: Path, pid: int) -> None:
        """Write down the server of the cluster in ``root``, just started."""
        start = process_start_time(pid)
        if start is not None:
            self._write({"kind": "postgres", "root": str(root), "pid": pid, "start": start})

    # --- removing
    def undo(self) -> Removal:
        """Remove what is recorded and nothing else; forget the ledger if all of it is gone."""
        for process in self.processes:
            kill_process(process.pid, process.start_time)
        _wait_gone([(p.pid, p.start_time) for p in self.processes])
        removal = Removal()
        for cluster in self.clusters.values():
            _remove_cluster(cluster, removal)
        for ns in reversed(list(self.namespaces.values())):
            self._remove_netns(ns, removal)
        if not removal.left:
            self.path.unlink(missing_ok=True)
            self.namespaces.clear()
            self.links.clear()
            self.processes.clear()
            self.clusters.clear()
        return removal

    def _remove_netns(self, ns: _Namespace, removal: Removal) -> None:
        found = netns_identity(ns.name)
        if found is None:
            return  # never made, or already gone
        if ns.identity is not None and found != ns.identity:
            # Ours was deleted and someone else has since made a namespace with the same name.
            log.warning("lab.netns_not_ours", netns=ns.name)
            return
        _kill_all_in(found)
        for link in self.links:
            if link.netns == ns.name:
                run(["ip", "-n", ns.name, "link", "delete", link.name], check=False)
        run(["ip", "netns", "delete", ns.name], check=False)
        (removal.left if netns_identity(ns.name) is not None else removal.removed).append(ns.name)


def _remove_cluster(cluster: _Cluster, removal: Removal) -> None:
    """Stop the recorded server if it is still the one recorded, then remove its directory."""
    if cluster.pid is not None and cluster.start_time is not None:
        server = [(cluster.pid, cluster.start_time)]
        if kill_process(cluster.pid, cluster.start_time, signal.SIGQUIT):
            _wait_gone(server)
        if process_running(cluster.pid, cluster.start_time):
            kill_process(cluster.pid, cluster.start_time)
            _wait_gone(server)
        if process_running(cluster.pid, cluster.start_time):
            removal.left.append(f"PostgreSQL server {cluster.pid} ({cluster.root})")
            return
    shutil.rmtree(cluster.root, ignore_errors=True)


def _kill_all_in(identity: NetnsIdentity) -> None:
    """Kill what still runs in a namespace of the run: processes started but not yet written
    down, and their children (probes, ``nft``)."""
    stragglers = [(pid, process_start_time(pid)) for pid in processes_in(identity)]
    started = [(pid, start) for pid, start in stragglers if start is not None]
    for pid, start in started:
        kill_process(pid, start)
    _wait_gone(started)


def _wait_gone(processes: Sequence[tuple[int, int]]) -> None:
    deadline = time.monotonic() + GONE_TIMEOUT
    alive = list(processes)
    while alive and time.monotonic() < deadline:
        alive = [(pid, start) for pid, start in alive if process_running(pid, start)]
        if alive:
            time.sleep(0.05)
    for pid, start in alive:
        log.warning("lab.process_survived_sigkill", pid=pid, start=start, signal=signal.SIGKILL)
