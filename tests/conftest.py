"""Test-wide rules: no external process unless a test says so, and kernel tests need root."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _forbid_subprocess(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Pure tests must not start processes; mark a test ``subprocess`` or ``kernel`` to allow it."""
    if request.node.get_closest_marker("subprocess") or request.node.get_closest_marker("kernel"):
        yield
        return

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"test started a process without a subprocess/kernel mark: {args!r}")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    yield


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regen-golden",
        action="store_true",
        default=False,
        help="rewrite the expected plans under tests/golden/expected from the current compiler",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Kernel tests need root, ip and nft. Without them they skip, except in CI, where they fail."""
    missing = [tool for tool in ("ip", "nft", "tc") if shutil.which(tool) is None]
    reason = None
    if os.geteuid() != 0:
        reason = "needs root"
    elif missing:
        reason = f"needs {', '.join(missing)}"
    if reason is None or os.environ.get("CI") == "true":
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.get_closest_marker("kernel"):
            item.add_marker(skip)
