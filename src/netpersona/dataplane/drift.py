"""Drift: what someone else changed or deleted among the things the agent owns.

The applied plan (and the originals it builds on) says what should be there; the kernel is
read back and compared. On top of the plan comparison, the table's rules are compared with the
listing taken right after apply, so an edited rule is caught even when the shape still fits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from netpersona.dataplane.kernel import Kernel
from netpersona.dataplane.originals import plan_target
from netpersona.dataplane.snapshot import read_snapshot, target_mismatches
from netpersona.dataplane.state import AppliedState, Originals
from netpersona.model.jsontree import JSON

__all__ = ["detect_drift", "drop_counters"]


def _rules_by_chain(listing: Iterable[JSON]) -> dict[str, list[str]]:
    chains: dict[str, list[str]] = {}
    for obj in listing:
        if "rule" in obj:
            body = obj["rule"]
            chains.setdefault(body["chain"], []).append(json.dumps(body["expr"], sort_keys=True))
    return chains


def detect_drift(kernel: Kernel, state: AppliedState, originals: Originals) -> list[str]:
    """Every difference between the kernel and what was applied ([] when nothing drifted)."""
    target = plan_target(state.plan, originals)
    live = read_snapshot(kernel, target.sysctl_keys, target.link_names)
    problems = target_mismatches(target, live)
    if live.nft is not None and state.nft_listing:
        applied = _rules_by_chain(state.nft_listing)
        now = _rules_by_chain(live.nft)
        for chain in sorted(applied.keys() | now.keys()):
            if applied.get(chain) != now.get(chain) and len(applied.get(chain, [])) == len(
                now.get(chain, [])
            ):
                problems.append(f"nftables: a rule of chain {chain} was changed since apply")
    return problems


def drop_counters(kernel: Kernel) -> dict[str, tuple[int, int]]:
    """The table's named ``drop_*`` counters: reason -> (packets, bytes)."""
    counters = {}
    for obj in kernel.nft_counters() or ():
        body = obj.get("counter")
        if body and body["name"].startswith("drop_"):
            counters[body["name"]] = (int(body.get("packets", 0)), int(body.get("bytes", 0)))
    return counters
