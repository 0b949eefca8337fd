"""Named network namespaces (``ip netns``) and the processes that run in them.

A namespace is known to the kernel by its nsfs inode, not by its name: a name can be deleted and
made again by someone else. :func:`netns_identity` and :func:`process_netns` give that identity,
so code that removes what it created can check it is still the same namespace. A process is
likewise known by its pid and its start time (``/proc/<pid>/stat`` field 22), because pids are
reused. The host's own namespace is never changed here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from netpersona.system.command import in_netns, run

__all__ = [
    "NETNS_DIR",
    "Netns",
    "NetnsIdentity",
    "delete_netns",
    "kill_process",
    "list_netns",
    "netns_identity",
    "on_delete",
    "process_netns",
    "process_running",
    "process_start_time",
    "processes_in",
]

NETNS_DIR = Path("/run/netns")  # where ``ip netns add`` mounts a namespace under its name
PROC = Path("/proc")

NetnsIdentity = tuple[int, int]  # (st_dev, st_ino) of the namespace's nsfs file


@dataclass(frozen=True, slots=True)
class Netns:
    name: str

    def argv(self, argv: Sequence[str]) -> list[str]:
        return in_netns(self.name, argv)

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        return run(self.argv(argv), input=input, check=check, timeout=timeout)

    def popen(self, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[str]:
        """A background process in this namespace (killed with the namespace)."""
        return subprocess.Popen(self.argv(argv), text=True, **kwargs)  # type: ignore[call-overload, no-any-return]


def list_netns() -> list[str]:
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _kill_processes(name: str) -> None:
    pids = run(["ip", "netns", "pids", name], check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


_DELETE_HOOKS: list[Callable[[str], None]] = []


def on_delete(hook: Callable[[str], None]) -> None:
    """Call ``hook(name)`` before :func:`delete_netns` deletes a namespace (to let go of what
    this process holds in it: a thread that joined it keeps it alive)."""
    _DELETE_HOOKS.append(hook)


def delete_netns(name: str) -> None:
    """Delete the namespace ``name`` and kill every process in it (for namespaces the caller
    made itself, under a name nobody else uses)."""
    for hook in _DELETE_HOOKS:
        hook(name)
    _kill_processes(name)
    run(["ip", "netns", "delete", name], check=False)


def netns_identity(name: str) -> NetnsIdentity | None:
    """The identity of the namespace mounted as ``name``, or None if there is none."""
    try:
        st = (NETNS_DIR / name).stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def process_netns(pid: int) -> NetnsIdentity | None:
    """The identity of the namespace process ``pid`` runs in, or None if it is gone."""
    try:
        st = (PROC / str(pid) / "ns" / "net").stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _stat(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` from field 3 on, or None if the process is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or ')'.
    return stat[stat.rindex(")") + 2 :].split()


def process_start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (clock ticks after boot), or None if it is gone."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def process_running(pid: int, start_time: int) -> bool:
    """Whether the process that started at ``start_time`` still runs as ``pid`` (a zombie,
    dead but not yet reaped by its parent, does not count)."""
    fields = _stat(pid)
    return fields is not None and int(fields[19]) == start_time and fields[0] not in "ZX"


def processes_in(identity: NetnsIdentity) -> list[int]:
    """Every process running in the namespace with this identity."""
    pids = []
    for entry in PROC.iterdir():
        if entry.name.isdigit() and process_netns(int(entry.name)) == identity:
            pids.append(int(entry.name))
    return pids


def kill_process(pid: int, start_time: int, sig: signal.Signals = signal.SIGKILL) -> bool:
    """Send ``sig`` to ``pid`` only if it is still the process that started at ``start_time``.

    The pid is pinned with a pidfd before its start time is read, so a pid reused in between
    cannot receive the signal. Returns whether the signal was sent.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if process_start_time(pid) != start_time:
            return False
        signal.pidfd_send_signal(pidfd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)
