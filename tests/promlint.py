"""The checks ``promtool check metrics`` makes on a text exposition (format 0.0.4), for tests.

The tests run the real promtool (``tests/promtool.py``, which scripts/setup unpacks into
``.tools/bin``); on a machine without it, outside CI, they fall back to these rules (the
parser's, then promlint's), written down from the exposition-format documentation and the
metric-naming guide:

- the text parses: ``# HELP``/``# TYPE`` at most once per family and before its samples, a
  family's samples together, samples named after their family (histograms: ``_bucket`` with
  ``le``, ``_sum``, ``_count``), valid names, label names and values, no series twice;
- every family has help text;
- counters end in ``_total``, and nothing else does; ``_bucket``/``_sum``/``_count`` and the
  ``le``/``quantile`` labels only where their types put them;
- names and label names are snake_case, with no ``:`` (kept for recording rules);
- base units (seconds, bytes, ...), not ``milliseconds`` or ``kilobytes``, and no abbreviations
  (``_sec``, ``_ms``); the type's name is not in the metric's name.
"""

from __future__ import annotations

import math
import re

__all__ = ["lint"]

NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<rest>.+)$")
LABEL_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
NON_BASE_UNITS = (
    *("milliseconds", "microseconds", "nanoseconds", "minutes", "hours", "days", "weeks"),
    *("kilobytes", "megabytes", "gigabytes", "terabytes", "kibibytes", "mebibytes", "bits"),
    *("percent", "celsius", "fahrenheit", "kilometers", "milligrams"),
)
ABBREVIATIONS = (
    *("sec", "secs", "msec", "msecs", "ms", "usec", "us", "nsec", "ns", "min", "mins"),
    *("hr", "hrs", "kb", "mb", "gb", "pct", "cnt", "num"),
)


def _labels(text: str | None, where: str, problems: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    rest = (text or "").strip()
    while rest:
        match = LABEL_PAIR.match(rest)
        if match is None:
            problems.append(f"{where}: labels do not parse: {rest!r}")
            return labels
        name, value = match.group(1), match.group(2)
        if name in labels:
            problems.append(f"{where}: label {name} twice")
        labels[name] = value
        rest = rest[match.end() :].strip()
    return labels


def _family_of(sample: str, types: dict[str, str]) -> str | None:
    if sample in types:
        return sample
    for suffix in ("_bucket", "_sum", "_count", "_created"):
        base = sample.removesuffix(suffix)
        if base != sample and types.get(base) in ("histogram", "summary"):
            return base
    if sample.endswith("_created"):
        base = sample.removesuffix("_created")
        if types.get(base) == "counter" or types.get(base + "_total") == "counter":
            return base + "_total" if base + "_total" in types else base
    return None


def _name_problems(name: str, kind: str) -> list[str]:
    problems = []
    if ":" in name:
        problems.append(f"{name}: ':' is reserved for recording rules")
    if name != name.lower():
        problems.append(f"{name}: not snake_case")
    if kind == "counter" and not name.endswith("_total"):
        problems.append(f'{name}: counter metrics should have "_total" suffix')
    if kind != "counter" and name.endswith("_total"):
        problems.append(f'{name}: non-counter metrics should not have "_total" suffix')
    if kind not in ("histogram", "summary") and name.endswith(("_bucket", "_sum", "_count")):
        problems.append(f"{name}: _bucket, _sum and _count are for histograms and summaries")
    words = name.split("_")
    for unit in NON_BASE_UNITS:
        if unit in words:
            problems.append(f"{name}: use base unit instead of {unit!r}")
    for short in ABBREVIATIONS:
        if short in words:
            problems.append(f"{name}: abbreviated unit {short!r}")
    for type_name in TYPES - {"untyped"}:
        if type_name in words:
            problems.append(f"{name}: metric name should not include type {type_name!r}")
    return problems


def lint(text: str) -> list[str]:
    """Every problem ``promtool check metrics`` would report for ``text`` ([] when clean)."""
    problems: list[str] = []
    helps: dict[str, str] = {}
    types: dict[str, str] = {}
    done: set[str] = set()  # families whose samples are over
    current: str | None = None
    series: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    with_samples: set[str] = set()
    if text and not text.endswith("\n"):
        problems.append("the text does not end with a newline")
    for number, line in enumerate(text.splitlines(), 1):
        where = f"line {number}"
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not NAME.match(name):
                    problems.append(f"{where}: {name!r} is not a metric name")
                if name in done or (name in with_samples and name != current):
                    problems.append(f"{where}: {parts[1]} for {name} after its samples")
                if parts[1] == "HELP":
                    if name in helps:
                        problems.append(f"{where}: second HELP for {name}")
                    helps[name] = parts[3] if len(parts) > 3 else ""
                else:
                    kind = parts[3] if len(parts) > 3 else ""
                    if name in types:
                        problems.append(f"{where}: second TYPE for {name}")
                    if kind not in TYPES:
                        problems.append(f"{where}: unknown type {kind!r} for {name}")
                    if name in with_samples:
                        problems.append(f"{where}: TYPE for {name} after its samples")
                    types[name] = kind
                if current is not None and name != current:
                    done.add(current)
                current = name
            continue
        match = SAMPLE.match(line)
        if match is None:
            problems.append(f"{where}: not a sample: {line!r}")
            continue
        sample = match.group("name")
        labels = _labels(match.group("labels"), where, problems)
        for label in labels:
            if not LABEL.match(label) or label.startswith("__"):
                problems.append(f"{where}: {label!r} is not a label name")
            if label != label.lower():
                problems.append(f"{where}: label {label} is not snake_case")
        value = match.group("rest").split()[0]
        try:
            number_value = float(value)
        except ValueError:
            problems.append(f"{where}: {value!r} is not a number")
            number_value = 0.0
        family = _family_of(sample, types) or sample
        if family not in types:
            types[family] = "untyped"
        kind = types[family]
        if family in done:
            problems.append(f"{where}: samples of {family} are not together")
        if current is not None and family != current:
            done.add(current)
        current = family
        with_samples.add(family)
        if "le" in labels and not (kind == "histogram" and sample.endswith("_bucket")):
            problems.append(f"{where}: label 'le' outside a histogram's buckets")
        if "quantile" in labels and kind != "summary":
            problems.append(f"{where}: label 'quantile' outside a summary")
        if kind == "histogram" and sample.endswith("_bucket") and "le" not in labels:
            problems.append(f"{where}: bucket without 'le'")
        if kind == "counter" and (number_value < 0 or math.isnan(number_value)):
            problems.append(f"{where}: counter {sample} is {value}")
        key = (sample, tuple(sorted(labels.items())))
        if key in series:
            problems.append(f"{where}: series {sample}{labels} twice")
        series.add(key)
    for family, kind in types.items():
        if not helps.get(family, "").strip():
            problems.append(f"{family}: no help text")
        problems += _name_problems(family, kind)
    return problems
