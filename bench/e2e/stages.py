"""bench/e2e: what each change-to-enforced sample is made of, from the agents' debug logs.

With ``run.py --trace`` the agents log at debug level in JSON; each event carries a wall-clock
timestamp (every process of the lab runs on one host, one clock). For each round and VM this
lines up, from the admin API's acknowledgement:

    answer   the persona view's answer with the round's version taken by the watcher
    pass     the pass that compiled it started (after the pass in flight, if any, ended)
    planned  its plan compiled (host facts read)
    applied  the kernel changed (``nft -f`` or a set update done)
    syn      the SYN to the round's port answered (measured by the driver)

and counts what else happened in between: passes, kernel changes, paced requests.
"""

from __future__ import annotations

import json
import statistics
from datetime import datetime
from pathlib import Path
from typing import Any

STAGES = ("answer", "pass", "planned", "applied", "syn")
APPLIED = ("persona applied", "peer sets updated in place")


def read_events(path: Path) -> list[dict[str, Any]]:
    events = []
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "timestamp" in event:
            event["t"] = datetime.fromisoformat(event["timestamp"]).timestamp()
            events.append(event)
    return events


def first(events: list[dict[str, Any]], after: float, **match: Any) -> dict[str, Any] | None:
    for event in events:
        if event["t"] >= after and all(event.get(k) == v for k, v in match.items()):
            return event
    return None


def breakdown(
    round_: dict[str, Any], vm: str, address: str, events: list[dict[str, Any]]
) -> dict[str, Any]:
    """Milliseconds from the acknowledgement to each stage of one sample, and what else ran."""
    acked, version = round_["acked_wall"], round_["version"]
    start = acked - 0.5  # the watcher may take the answer before the driver reads the ack
    out: dict[str, Any] = {"vm": vm, "version": version}
    answer = first(events, start, event="answer taken", view="persona", version=version)
    stages: dict[str, float | None] = dict.fromkeys(STAGES)
    if answer is not None:
        stages["answer"] = answer["t"]
        started = first(events, answer["t"], event="pass started")
        if started is not None:
            stages["pass"] = started["t"]
        planned = first(events, answer["t"], event="plan compiled", version=version)
        if planned is not None:
            stages["planned"] = planned["t"]
        for name in APPLIED:
            done = first(events, answer["t"], event=name, version=version)
            if done is not None:
                stages["applied"] = done["t"]
                break
    syn_s = round_["answered_s"].get(address)
    stages["syn"] = acked + syn_s if syn_s is not None else None
    out["ms"] = {k: None if v is None else round((v - acked) * 1000, 1) for k, v in stages.items()}
    end = stages["syn"] or acked + 30
    window = [e for e in events if start <= e["t"] <= end]
    out["passes"] = sum(e["event"] == "pass started" for e in window)
    out["kernel_changes"] = sum(e["event"] in APPLIED for e in window)
    out["superseded"] = sum(
        e["event"] == "superseded by a newer answer before applying" for e in window
    )
    out["paced_s"] = round(sum(e["seconds"] for e in window if e["event"] == "request paced"), 3)
    out["answers"] = [
        (e["view"], e.get("changed"), round((e["t"] - acked) * 1000, 1), e.get("held"))
        for e in window
        if e["event"] == "answer taken"
    ]
    return out


def summarize(
    rounds: list[dict[str, Any]], vms: dict[str, tuple[str, Path]], worst: int = 8
) -> dict[str, Any]:
    """The per-stage spread over all samples and the ``worst`` samples laid out; ``vms`` maps
    each VM to its address and its agent's log."""
    events = {vm: read_events(log) for vm, (_, log) in vms.items()}
    samples = [breakdown(r, vm, vms[vm][0], events[vm]) for r in rounds for vm in vms]
    gaps: dict[str, list[float]] = {}
    for sample in samples:
        ms = sample["ms"]
        previous = 0.0
        for stage in STAGES:
            if ms[stage] is None:
                break
            gaps.setdefault(f"{stage}_after_previous", []).append(ms[stage] - previous)
            previous = ms[stage]
    spread = {
        name: {
            "p50": round(statistics.median(values), 1),
            "p90": round(sorted(values)[int(0.9 * (len(values) - 1))], 1),
            "max": round(max(values), 1),
        }
        for name, values in gaps.items()
    }
    laid_out = sorted(samples, key=lambda s: s["ms"]["syn"] or 1e9, reverse=True)[:worst]
    return {"stage_gaps_ms": spread, "worst": laid_out}
