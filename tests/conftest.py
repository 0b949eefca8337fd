"""Test-wide rules: no external process unless a test says so, and kernel tests need root;
and the throwaway PostgreSQL cluster store tests run on."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from netpersona.dataplane import nftlib
from tests.store.pg_cluster import PgCluster, find_pg_bin
from tests.store.pg_cluster import pg_cluster as start_pg_cluster

_POPEN_INIT = subprocess.Popen.__init__


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

    def refuse_nft(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("test ran nftables in-process without a subprocess/kernel mark")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    # libnftables and nfnetlink in this process reach the kernel as nft would.
    monkeypatch.setattr(nftlib._Context, "__init__", refuse_nft)
    monkeypatch.setattr(nftlib, "_new_netfilter_socket", refuse_nft)
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


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A throwaway PostgreSQL cluster for the whole session (see tests/store/pg_cluster.py),
    removed afterwards even when tests fail. Without PostgreSQL the tests that use it skip,
    except in CI, where they fail."""
    bin_dir = find_pg_bin()
    reason = None
    if bin_dir is None:
        reason = "needs PostgreSQL's initdb (Debian: apt-get install postgresql)"
    elif os.geteuid() == 0 and not _has_user("postgres"):
        reason = "initdb refuses root, and there is no postgres user to run it as"
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    assert bin_dir is not None
    # Started by whichever test first needs it, which may be one that may not start processes:
    # the cluster's own commands may.
    with contextlib.ExitStack() as stack:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(subprocess.Popen, "__init__", _POPEN_INIT)
            cluster = stack.enter_context(start_pg_cluster(bin_dir))
        yield cluster


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
