"""Throwaway network namespaces for real-kernel tests.

Every namespace made here is named with a prefix and the creating process id, and is deleted
on exit from the context manager however the block ends, along with every process still
running in it; links inside a namespace die with it. The host's own namespace is never changed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator

from netpersona.system.command import run
from netpersona.system.netns import Netns, delete_netns, list_netns

__all__ = ["Netns", "delete_netns", "list_netns", "netns", "netns_group"]

_counter = itertools.count()


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
