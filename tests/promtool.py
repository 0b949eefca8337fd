"""``promtool check metrics``, Prometheus's own linter, on an exposition, for tests.

scripts/setup unpacks promtool into ``.tools/bin`` (it ships only inside Debian's whole
``prometheus`` package); one on ``PATH`` does too. Without either, in CI (``CI=true``) the test
fails; elsewhere it falls back to ``tests/promlint.py``, which writes promtool's rules down, so a
machine without promtool still checks something.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.promlint import lint

__all__ = ["check_metrics", "find_promtool"]

TOOLS = Path(__file__).resolve().parent.parent / ".tools" / "bin" / "promtool"


def find_promtool() -> str | None:
    if os.access(TOOLS, os.X_OK):
        return str(TOOLS)
    return shutil.which("promtool")


def check_metrics(text: str) -> list[str]:
    """What promtool says about ``text``: every line it prints, and its exit code when not 0
    (so an empty list means clean). The caller's test must be allowed to start processes."""
    promtool = find_promtool()
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing: run scripts/setup (it unpacks it into .tools/bin)")
        return lint(text)
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    problems = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    if done.returncode != 0:
        problems.append(f"promtool exited {done.returncode}")
    return problems
