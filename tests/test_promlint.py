"""The promtool rules of tests/promlint.py catch what promtool would (else a clean result means
nothing)."""

from __future__ import annotations

import pytest

from tests.promlint import lint

GOOD = """# HELP app_requests_total Requests.
# TYPE app_requests_total counter
app_requests_total{route="/a"} 3.0
# HELP app_latency_seconds Latency.
# TYPE app_latency_seconds histogram
app_latency_seconds_bucket{le="0.1"} 1.0
app_latency_seconds_bucket{le="+Inf"} 2.0
app_latency_seconds_count 2.0
app_latency_seconds_sum 0.3
"""


def test_a_clean_exposition_is_clean() -> None:
    assert lint(GOOD) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("# TYPE a_total counter\na_total 1\n", "no help text"),
        ("# HELP a A.\n# TYPE a counter\na 1\n", '"_total" suffix'),
        ("# HELP a_total A.\n# TYPE a_total gauge\na_total 1\n", "non-counter"),
        ("# HELP a_ms A.\n# TYPE a_ms gauge\na_ms 1\n", "abbreviated"),
        ("# HELP a_milliseconds A.\n# TYPE a_milliseconds gauge\na_milliseconds 1\n", "base unit"),
        ("# HELP aB A.\n# TYPE aB gauge\naB 1\n", "snake_case"),
        ('# HELP a A.\n# TYPE a gauge\na{x="1"} 1\na{x="1"} 2\n', "twice"),
        ("# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb 1\na 2\n", "together"),
        ('# HELP a A.\n# TYPE a gauge\na{le="1"} 1\n', "'le'"),
        ("# HELP a A.\n# TYPE a gauge\na one\n", "not a number"),
        ("# HELP a_count A.\n# TYPE a_count gauge\na_count 1\n", "histograms and summaries"),
        ("# HELP a A.\n# TYPE a gauge\na 1", "newline"),
    ],
)
def test_each_rule_catches_its_problem(text: str, problem: str) -> None:
    assert any(problem in p for p in lint(text)), lint(text)
