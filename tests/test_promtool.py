"""The promtool the tests run finds what it should (else a clean result means nothing), and CI
has it."""

from __future__ import annotations

import os

import pytest

from tests.promtool import check_metrics, find_promtool

pytestmark = pytest.mark.subprocess

GOOD = """# HELP app_requests_total Requests.
# TYPE app_requests_total counter
app_requests_total{route="/a"} 3.0
"""


def test_in_ci_the_real_promtool_is_there() -> None:
    if os.environ.get("CI") != "true" and find_promtool() is None:
        pytest.skip("no promtool here (scripts/setup unpacks it); the tests use tests/promlint.py")
    assert find_promtool() is not None


def test_a_clean_exposition_is_clean() -> None:
    assert check_metrics(GOOD) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("# HELP a A.\n# TYPE a counter\na 1\n", "_total"),
        ("# TYPE a_total counter\na_total 1\n", "help"),
        ("# HELP a_milliseconds A.\n# TYPE a_milliseconds gauge\na_milliseconds 1\n", "seconds"),
        ("# HELP a A.\n# TYPE a gauge\na{ 1\n", ""),
    ],
)
def test_a_flawed_exposition_is_reported(text: str, problem: str) -> None:
    problems = check_metrics(text)
    assert problems, text
    assert problem.lower() in " ".join(problems).lower()
