"""Driving probes from Python: a listener in one namespace, senders in another."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from netpersona.errors import KernelError
from netpersona.system.netns import Netns

__all__ = ["Listener", "listening", "send_probes"]

Probe = dict[str, Any]
PROBE = [sys.executable, "-m", "netpersona.probe"]


class Listener:
    """A running ``probe listen``; :meth:`records` stops it and returns what it received."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self._records: list[dict[str, Any]] | None = None

    def records(self, settle: float = 0.2) -> list[dict[str, Any]]:
        if self._records is None:
            time.sleep(settle)  # let datagrams in flight arrive
            self.process.terminate()
            out, _ = self.process.communicate(timeout=10)
            self._records = [json.loads(line) for line in out.splitlines() if line.strip()]
        return self._records

    def tokens(self) -> set[str]:
        """The ids of the probes that arrived (token ``id/index`` -> ``id``)."""
        return {r["token"].rsplit("/", 1)[0] for r in self.records() if "token" in r}


@contextlib.contextmanager
def listening(
    ns: Netns,
    *,
    tcp: Sequence[int] = (),
    udp: Sequence[int] = (),
    groups: Sequence[str] = (),
    ifname: str | None = None,
    duration: float = 60.0,
) -> Iterator[Listener]:
    argv = [*PROBE, "listen", "--duration", str(duration)]
    argv += [arg for port in tcp for arg in ("--tcp", str(port))]
    argv += [arg for port in udp for arg in ("--udp", str(port))]
    argv += [arg for group in groups for arg in ("--group", group)]
    if ifname:
        argv += ["--ifname", ifname]
    process = ns.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    listener = Listener(process)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        if not first.strip():
            err = process.stderr.read() if process.stderr else ""
            raise KernelError(f"probe listener in {ns.name} did not start: {err.strip()}")
        yield listener
    finally:
        if listener._records is None:
            process.kill()
            process.communicate(timeout=10)


def send_probes(ns: Netns, probes: Sequence[Probe]) -> dict[str, dict[str, Any]]:
    """Run ``probes`` from ``ns``; results by probe id."""
    done = ns.run([*PROBE, "send", "-"], input=json.dumps(list(probes)), timeout=60)
    return {r["id"]: r for r in json.loads(done.stdout)}
