"""Throwaway network namespaces for real-kernel tests and the lab.

Every namespace made here is named with a prefix and the creating process id, and is deleted
on exit from the context manager however the block ends, along with every process still
running in it; links inside a namespace die with it. The host's own namespace is never changed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from netpersona.system.command import in_netns, run

__all__ = ["Netns", "delete_netns", "list_netns", "netns", "netns_group"]

_counter = itertools.count()


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


def delete_netns(name: str) -> None:
    _kill_processes(name)
    run(["ip", "netns", "delete", name], check=False)


def _new_name(prefix: str) -> str:
    # Interface-name rules do not apply to namespaces, but keep names short for ip output.
    return f"{prefix}-{os.getpid()}-{next(_counter)}"


@contextlib.contextmanager
def netns(prefix: str = "nptest") -> Iterator[Netns]:
    name = _new_name(prefix)
    run(["ip", "netns", "add", name])
    try:
        ns = Netns(name)
        ns.run(["ip", "link", "set", "lo", "up"])
        yield ns
    finally:
        delete_netns(name)


@contextlib.contextmanager
def netns_group(count: int, prefix: str = "nptest") -> Iterator[list[Netns]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(netns(prefix)) for _ in range(count)]
