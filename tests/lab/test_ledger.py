"""The lab's ledger against the real kernel: what it removes, and what it must leave alone."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from netpersona.lab.ledger import LEDGER, Ledger
from netpersona.system.command import run
from netpersona.system.netns import list_netns, netns_identity, process_start_time

pytestmark = pytest.mark.kernel


@pytest.fixture
def name() -> Iterator[str]:
    """A namespace name no one else uses; deleted afterwards whatever the test left."""
    ns = f"npledger-{os.getpid()}"
    yield ns
    run(["ip", "netns", "delete", ns], check=False)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(["sleep", "600"], text=True)
    yield process
    process.kill()
    process.wait(10)


def test_a_namespace_created_and_recorded_is_removed_with_its_processes(
    tmp_path: Path, name: str
) -> None:
    ledger = Ledger(tmp_path / LEDGER)
    ledger.create_netns(name)
    process = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "600"], text=True)
    ledger.started(process.pid, name)
    stray = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "600"], text=True)
    try:
        removal = Ledger.load(tmp_path).undo()
        # Reap them here; the ledger only kills (the lab's own children are reaped by it).
        assert process.wait(10) == -9
        assert stray.wait(10) == -9, "a process in the run's namespace was left running"
    finally:
        process.kill()
        stray.kill()
    assert removal.removed == [name]
    assert name not in list_netns()
    assert not (tmp_path / LEDGER).exists()


def test_a_crash_between_creating_and_confirming_a_namespace_is_harmless(
    tmp_path: Path, name: str
) -> None:
    # What a run killed right after ``ip netns add`` leaves: the intent, not the identity.
    (tmp_path / LEDGER).write_text(json.dumps({"kind": "netns", "name": name}) + "\n{torn")
    run(["ip", "netns", "add", name])
    assert Ledger.load(tmp_path).undo().removed == [name]
    assert name not in list_netns()


def test_a_namespace_someone_else_made_again_under_a_recorded_name_is_left_alone(
    tmp_path: Path, name: str
) -> None:
    ledger = Ledger(tmp_path / LEDGER)
    ledger.create_netns(name)
    recorded = netns_identity(name)
    run(["ip", "netns", "delete", name])
    run(["ip", "netns", "add", name])  # someone else's, by the same name
    assert netns_identity(name) != recorded
    Ledger.load(tmp_path).undo()
    assert name in list_netns()


def test_a_recorded_pid_with_another_start_time_is_never_signalled(
    tmp_path: Path, sleeper: subprocess.Popen[str]
) -> None:
    start = process_start_time(sleeper.pid)
    assert start is not None
    # The recorded process ended long ago and its pid now belongs to this sleeper.
    entry = {"kind": "process", "pid": sleeper.pid, "start": start - 1, "netns": "gone"}
    (tmp_path / LEDGER).write_text(json.dumps(entry) + "\n")
    Ledger.load(tmp_path).undo()
    assert sleeper.poll() is None


def test_a_recorded_cluster_is_stopped_and_its_directory_removed_and_nothing_else(
    tmp_path: Path, sleeper: subprocess.Popen[str]
) -> None:
    # A sleep stands in for the PostgreSQL server: what counts is that the recorded pid, with
    # its start time, is stopped, and that only the recorded directory goes.
    root, other = tmp_path / "postgres", tmp_path / "other"
    for directory in (root, other):
        (directory / "data").mkdir(parents=True)
    ledger = Ledger(tmp_path / LEDGER)
    ledger.cluster_intent(root)
    ledger.cluster_started(root, sleeper.pid)
    reloaded = Ledger.load(tmp_path)
    assert [c.pid for c in reloaded.clusters.values()] == [sleeper.pid]
    assert reloaded.undo().left == []
    assert sleeper.wait(10) is not None
    assert not root.exists()
    assert other.exists()
    assert not (tmp_path / LEDGER).exists()


def test_a_cluster_whose_pid_was_reused_is_not_signalled(
    tmp_path: Path, sleeper: subprocess.Popen[str]
) -> None:
    start = process_start_time(sleeper.pid)
    assert start is not None
    entry = {"kind": "postgres", "root": str(tmp_path / "pg"), "pid": sleeper.pid}
    (tmp_path / LEDGER).write_text(json.dumps({**entry, "start": start + 1}) + "\n")
    (tmp_path / "pg").mkdir()
    Ledger.load(tmp_path).undo()
    assert sleeper.poll() is None, "a process that only shares the recorded pid was killed"
    assert not (tmp_path / "pg").exists()
