"""Try, then confirm: an apply that reverts by itself unless confirmed in time (``netplan try``).

``apply --confirm-timeout S`` applies, records the trial (a token, a deadline and the state to
go back to) in the state directory, and starts a watchdog in its own session (setsid(1)), so
it outlives the shell that ran apply: exactly the shell a bad persona may have cut off. At the
deadline the watchdog takes the state lock and, if the same trial is still pending, re-applies
the previous persona (or removes the persona if there was none). ``confirm`` clears the trial
under the same lock, so the two cannot both win.

Run as ``python -m netpersona.dataplane.trial --state-dir DIR --token T [--netns NS]``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from pathlib import Path

from netpersona.compiler.plan import Plan
from netpersona.dataplane.apply import Applier, ApplyReport
from netpersona.dataplane.kernel import LinuxKernel
from netpersona.dataplane.state import AppliedState, Pending, StateStore
from netpersona.errors import Conflict, NetpersonaError, NotFound
from netpersona.system.command import run

__all__ = ["confirm", "revert_if_pending", "start_trial"]


def start_trial(
    applier: Applier,
    plan: Plan,
    persona: str,
    timeout: float,
    *,
    netns: str | None = None,
) -> tuple[ApplyReport, Pending]:
    """Apply ``plan`` on trial for ``timeout`` seconds and start the watchdog."""
    store = applier.store
    with store.locked():
        previous = store.load()
        if previous is not None and previous.pending is not None:
            raise Conflict(
                "an earlier apply is still on trial: run `netpersona confirm` or wait "
                f"until {time.strftime('%H:%M:%S', time.localtime(previous.pending.deadline))}"
            )
        report = applier.apply(plan, persona)
        applied = store.load()
        assert applied is not None
        pending = Pending(
            token=secrets.token_hex(8),
            deadline=applier.clock() + timeout,
            previous=previous.to_json() if previous else None,
        )
        store.save(applied.with_pending(pending))
    argv = [sys.executable, "-m", "netpersona.dataplane.trial"]
    argv += ["--state-dir", str(store.directory), "--token", pending.token]
    if netns:
        argv += ["--netns", netns]
    # setsid -f returns at once; run() then waits only until the watchdog has let go of its
    # output pipes, which it does first thing, so this returns once the watchdog is running.
    run(["setsid", "-f", *argv])
    return report, pending


def confirm(store: StateStore) -> AppliedState:
    """Keep the persona on trial: the watchdog will find nothing to revert."""
    with store.locked():
        state = store.load()
        if state is None or state.pending is None:
            raise NotFound("no apply is awaiting confirmation")
        confirmed = state.with_pending(None)
        store.save(confirmed)
        return confirmed


def revert_if_pending(applier: Applier, token: str) -> str:
    """At the deadline: put the previous persona back if trial ``token`` is still pending."""
    store = applier.store
    with store.locked():
        state = store.load()
        if state is None or state.pending is None or state.pending.token != token:
            return "confirmed"
        previous = state.pending.previous
        if previous is None:
            applier.remove()
            return "reverted: persona removed"
        before = AppliedState.from_json(previous)
        applier.apply(before.plan, before.persona)
        return f"reverted to {before.persona}"


def _detach(log: Path) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    log.parent.mkdir(parents=True, exist_ok=True)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(devnull)
    os.close(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netpersona.dataplane.trial")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--token", required=True)
    parser.add_argument("--netns")
    args = parser.parse_args(argv)
    _detach(args.state_dir / "trial.log")
    store = StateStore(args.state_dir)
    state = store.load()
    if state is None or state.pending is None or state.pending.token != args.token:
        return 0
    time.sleep(max(0.0, state.pending.deadline - time.time()))
    try:
        outcome = revert_if_pending(Applier(LinuxKernel(args.netns), store), args.token)
    except NetpersonaError as exc:
        outcome = f"revert failed: {exc}"
    print(json.dumps({"at": time.time(), "token": args.token, "outcome": outcome}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
