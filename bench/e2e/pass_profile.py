"""bench/e2e: where one agent pass for a port change spends its time (prints JSON).

In a throwaway lab namespace, reads the host facts, compiles and applies a persona that allows
one new TCP port, ROUNDS times in a row, timing each phase and each call of the kernel
interface. Run as root from the repository root:

    .venv/bin/python bench/e2e/pass_profile.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netpersona.compiler import compile_plan
from netpersona.dataplane import Applier, LinuxKernel, StateStore
from netpersona.dataplane.host_probe import gather_facts
from netpersona.dataplane.kernel import Kernel
from netpersona.model import parse_persona_text
from netpersona.testing.topology import lab

SECONDS: defaultdict[str, float] = defaultdict(float)
CALLS: defaultdict[str, int] = defaultdict(int)


class Timed:
    """The kernel interface with every call timed."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.kernel, name)
        if not callable(attr):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                SECONDS[name] += time.perf_counter() - started
                CALLS[name] += 1

        return timed


def persona(port: int) -> str:
    return (
        "network_persona: {communication_mode: unicast, security_profile: medium,"
        f" allowed_protocols: [icmp, tcp/{port}], priority: 3}}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    rounds = parser.parse_args().rounds
    load_before = os.getloadavg()
    phases: defaultdict[str, float] = defaultdict(float)
    with lab() as net, tempfile.TemporaryDirectory() as work:
        kernel: Any = Timed(LinuxKernel(net.vm.name))
        applier = Applier(kernel, StateStore(Path(work)))
        applier.apply(compile_plan(parse_persona_text(persona(19999)), gather_facts(kernel)), "p")
        SECONDS.clear()
        CALLS.clear()
        steps: tuple[str, ...] = ()

        def phase(name: str, do: Callable[..., Any], *args: Any) -> Any:
            started = time.perf_counter()
            try:
                return do(*args)
            finally:
                phases[name] += time.perf_counter() - started

        for index in range(rounds):
            facts = phase("gather_facts", gather_facts, kernel)
            text = persona(20000 + index)
            plan = phase(
                "compile", lambda t, f: compile_plan(parse_persona_text(t), f), text, facts
            )
            steps = phase("apply", applier.apply, plan, "p").steps
    print(
        json.dumps(
            {
                "benchmark": "e2e agent pass for a port change",
                "rounds": rounds,
                "steps": list(steps),
                "phase_ms_per_pass": {k: round(v / rounds * 1000, 1) for k, v in phases.items()},
                "kernel_ms_per_pass": {
                    name: {
                        "ms": round(SECONDS[name] / rounds * 1000, 1),
                        "calls": CALLS[name] / rounds,
                    }
                    for name in sorted(SECONDS, key=lambda n: -SECONDS[n])
                },
                "loadavg_before": load_before,
                "loadavg_after": os.getloadavg(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
