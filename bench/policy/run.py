"""Policy engine benchmark; prints one JSON document.

For each fleet size N and rule count R: a synthetic policy (R ordered rules on labels, subnets,
context selectors and CEL conditions, some context-only, some reading labels; five overlays)
and a synthetic fleet of N instances whose labels are drawn from realistic value sets (app,
env, tier, zone, team). Measured on one core, in this process:

* ``full``: building the engine from scratch: every instance decided (policy compile timed
  separately), and ``us_per_decision`` = full time / N;
* ``label_change``: one instance's labels change (mean over many, each a different instance);
* ``context_change``: ``threat_level`` flips (mean over both directions), with how many
  instances changed.

Fleets (``--fleets``): ``typical`` (an app has one tier and team, env and zone vary),
``diverse`` (every label independent: tens of thousands of distinct label sets) and
``distinct`` (diverse, and a rule reads the instance name: no two instances are alike, so
the instances the walk leaves at that rule are settled one by one, ``settled_alone``).
Times are wall clock and CPU time of this process (``us_per_decision`` is CPU time / N,
which other load on the machine disturbs less).

The machine may be shared, so every configuration also reports ``reference_s``: the wall time
of a fixed pure-Python loop (best of three) run right before and right after the full
recompute, averaged, and the document carries ``/proc/loadavg`` at the start and the end.
Compare runs by ``full.per_reference`` (full seconds / reference_s) as well as by seconds.

    uv run python bench/policy/run.py          # 10k, 100k x 50, 500 rules; every fleet
    uv run python bench/policy/run.py --sizes 1000 --rules 20   # quick
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import time
from typing import Any

from netpersona.policy import (
    ContextChanged,
    LabelsChanged,
    PolicyEngine,
    parse_policy,
)
from netpersona.records import Instance, Interface, PersonaVersion

ENVS = ("prod", "staging", "dev")
TIERS = ("front", "middle", "back", "batch")
ZONES = tuple(f"zone-{i}" for i in range(8))
TEAMS = tuple(f"team-{i}" for i in range(12))
PERSONA_COUNT = 24


def personas() -> dict[str, PersonaVersion]:
    catalog = {}
    for i in range(PERSONA_COUNT):
        body: dict[str, Any] = {
            "communication_mode": ("unicast", "broadcast")[i % 2],
            "security_profile": ("low", "medium", "high")[i % 3],
            "allowed_protocols": ["https", "ssh", "icmp", "dns", f"tcp/{8000 + i}"],
            "priority": i % 8,
            "qos_parameters": {"egress_rate": f"{100 + i}mbit"},
        }
        catalog[f"p{i}"] = PersonaVersion.of(f"p{i}", 1, body)
    catalog["quarantine"] = PersonaVersion.of(
        "quarantine",
        1,
        {
            "communication_mode": "restricted",
            "security_profile": "high",
            "allowed_protocols": ["ssh"],
            "priority": 0,
            "peers": [{"cidr": "10.255.0.0/24"}],
        },
    )
    return catalog


def policy_document(rules: int, read_names: bool = False) -> dict[str, Any]:
    """R rules, mostly one app each with a twist every few rules, like a real policy grows."""
    items: list[dict[str, Any]] = []
    for i in range(rules):
        rule: dict[str, Any] = {
            "name": f"r{i}",
            "persona": f"p{i % PERSONA_COUNT}",
            "match": {"matchLabels": {"app": f"app-{i}"}},
        }
        kind = i % 10
        if kind == 1:
            rule["match"]["matchExpressions"] = [
                {"key": "env", "operator": "In", "values": ["prod", "staging"]}
            ]
        elif kind == 2:
            rule["when"] = 'threat_level != "high"'
        elif kind == 3:
            rule["when"] = 'labels.?tier.orValue("") == "front" || threat_level == "low"'
        elif kind == 4:
            rule["match"]["subnets"] = [f"10.{i % 250}.0.0/16"]
        elif kind == 5:
            rule["match"]["context"] = {"matchLabels": {"site": "lab"}}
        elif kind == 6:
            rule["match"]["matchExpressions"] = [
                {"key": "zone", "operator": "NotIn", "values": ["zone-0"]}
            ]
        items.append(rule)
    # A few rules no single label value anchors (tested against every instance).
    for j in range(max(1, rules // 50)):
        items.append(
            {
                "name": f"team-{j}",
                "persona": f"p{j % PERSONA_COUNT}",
                "match": {
                    "matchExpressions": [
                        {"key": "team", "operator": "Exists"},
                        {"key": f"owner-{j}", "operator": "Exists"},
                    ]
                },
            }
        )
    if read_names:
        items.append(
            {
                "name": "canary",
                "persona": "p1",
                "when": 'name.endsWith("-canary")',
            }
        )
    overlays = [
        {
            "name": "compromised",
            "enforce": True,
            "override": True,
            "match": {"matchLabels": {"security/compromised": "true"}},
            "set": {"persona": "quarantine"},
        },
        {
            "name": "threat-raised",
            "when": 'threat_level != "low"',
            "set": {"security_profile": "high", "qos_parameters": {"egress_rate": "50mbit"}},
        },
        {
            "name": "dev-high",
            "when": 'threat_level == "high"',
            "match": {"matchLabels": {"env": "dev"}},
            "set": {"remove_protocols": ["ssh"]},
        },
        {
            "name": "batch-cap",
            "match": {"matchLabels": {"tier": "batch"}},
            "set": {"qos_parameters": {"egress_rate": "20mbit"}},
        },
        {
            "name": "front-tls",
            "when": 'labels.?tier.orValue("") == "front" && threat_level == "high"',
            "set": {"allowed_protocols": ["https", "icmp"]},
        },
    ]
    return {
        "persona_policy": {
            "context": {
                "threat_level": {"values": ["low", "elevated", "high"], "default": "low"},
                "site": {"default": "lab"},
            },
            "rules": items,
            "default": "p0",
            "overlays": overlays,
        }
    }


def fleet(size: int, rules: int, profile: str, rng: random.Random) -> list[Instance]:
    """``typical``: an app has one tier and one team, as services do; ``diverse``: every label
    drawn independently (many more distinct label sets); ``distinct``: diverse, and every
    instance's name is read by a rule, so no two instances share a signature."""
    instances = []
    apps = int(rules * 1.2)  # some apps no rule names: they fall to the default
    app_tier = [rng.choice(TIERS) for _ in range(apps)]
    app_team = [rng.choice(TEAMS) if rng.random() < 0.3 else None for _ in range(apps)]
    for n in range(size):
        app = rng.randrange(apps)
        typical = profile == "typical"
        labels = {
            "app": f"app-{app}",
            "env": rng.choice(ENVS),
            "tier": app_tier[app] if typical else rng.choice(TIERS),
            "zone": rng.choice(ZONES),
        }
        team = app_team[app] if typical else (rng.choice(TEAMS) if rng.random() < 0.3 else None)
        if team is not None:
            labels["team"] = team
        if rng.random() < 0.001:
            labels["security/compromised"] = "true"
        address = f"10.{n % 250}.{(n // 250) % 250}.{n % 200 + 1}"
        instances.append(
            Instance(
                id=f"vm-{n}",
                name=f"vm-{n}",
                addresses=(address,),
                interfaces=(Interface("eth0", (f"{address}/16",)),),
                labels=tuple(sorted(labels.items())),
                pin="p1" if rng.random() < 0.01 else None,
            )
        )
    return instances


def reference_seconds() -> float:
    """Wall time of a fixed loop of dict and tuple work, like the engine's: the yardstick for
    how fast this machine runs Python right now."""
    start = time.perf_counter()
    table: dict[tuple[int, int], int] = {}
    for n in range(300_000):
        key = (n % 997, n % 13)
        table[key] = table.get(key, 0) + n
    return time.perf_counter() - start


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as file:
            return file.read().strip()
    except OSError:
        return "unknown"


def measure(size: int, rules: int, profile: str, seed: int) -> dict[str, Any]:
    reference = min(reference_seconds() for _ in range(3))
    rng = random.Random(seed)  # noqa: S311  # synthetic fleet, not a secret
    catalog = personas()
    document = policy_document(rules, read_names=profile == "distinct")
    start = time.perf_counter()
    policy = parse_policy(document, catalog)
    compile_s = time.perf_counter() - start
    instances = fleet(size, rules, profile, rng)

    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    engine = PolicyEngine(policy, catalog, {"threat_level": "low"}, instances)
    full_s, full_cpu = time.perf_counter() - start, time.process_time() - cpu
    reference = (reference + min(reference_seconds() for _ in range(3))) / 2

    label_times = []
    changed_by_label = 0
    for k in range(200):
        target = instances[rng.randrange(size)]
        labels = dict(engine.instances[target.id].labels)
        labels["app"] = f"app-{rng.randrange(int(rules * 1.2))}"
        start = time.perf_counter()
        changed = engine.recompute([LabelsChanged(target.id, labels)])
        label_times.append(time.perf_counter() - start)
        changed_by_label += len(changed)
        del k

    context_times = []
    context_changed = []
    for value in ("high", "low", "elevated", "low"):
        start = time.perf_counter()
        changed = engine.recompute([ContextChanged("threat_level", value)])
        context_times.append(time.perf_counter() - start)
        context_changed.append(len(changed))

    return {
        "instances": size,
        "rules": len(policy.rules),
        "overlays": len(policy.overlays),
        "fleet": profile,
        "signatures": engine.signatures,
        "settled_alone": engine.settled_alone,
        "reference_s": round(reference, 4),
        "compile_policy_s": round(compile_s, 4),
        "full": {
            "seconds": round(full_s, 4),
            "cpu_seconds": round(full_cpu, 4),
            "per_reference": round(full_s / reference, 2),
            "us_per_decision": round(full_cpu / size * 1e6, 3),
        },
        "label_change": {
            "mean_us": round(statistics.mean(label_times) * 1e6, 1),
            "p99_us": round(sorted(label_times)[int(len(label_times) * 0.99) - 1] * 1e6, 1),
            "changes": len(label_times),
            "instances_changed_total": changed_by_label,
        },
        "context_change": {
            "mean_s": round(statistics.mean(context_times), 4),
            "max_s": round(max(context_times), 4),
            "instances_changed": context_changed,
            "us_per_changed_instance": round(
                sum(context_times) / max(1, sum(context_changed)) * 1e6, 3
            ),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--rules", default="50,500")
    parser.add_argument(
        "--fleets", default="typical,diverse,distinct", help="typical, diverse and/or distinct"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    started = loadavg()
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        for rules in (int(r) for r in args.rules.split(",")):
            for profile in args.fleets.split(","):
                results.append(measure(size, rules, profile, args.seed))
    print(
        json.dumps(
            {
                "benchmark": "policy",
                "python": platform.python_version(),
                "machine": platform.machine(),
                "goal": "100k instances x 500 rules, full recompute under 1 s on one core",
                "loadavg_start": started,
                "loadavg_end": loadavg(),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
