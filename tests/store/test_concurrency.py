"""Two store objects (two processes, as far as the database can tell) racing on one database:
an ``If-Match`` write is won by exactly one of them, whatever the engine."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from netpersona.errors import Conflict, PreconditionFailed, StoreUnavailable
from netpersona.store import Instance
from netpersona.store.postgres import database as pg_database
from netpersona.store.sql import SqlStore
from tests.store.conftest import Database


def meeting_clock(barrier: threading.Barrier | None) -> Callable[[], float]:
    """A clock whose first reading waits for the other store's: both transactions have read
    the row (the clock is read after) before either writes. Later readings (a retry) do not
    wait. On SQLite writers are one at a time, so the race is run without the meeting."""
    waited = False

    def now() -> float:
        nonlocal waited
        if barrier is not None and not waited:
            waited = True
            barrier.wait(timeout=60)
        return time.time()

    return now


def race(
    database: Database, setup: Callable[[SqlStore], object], write: Callable[[SqlStore], object]
) -> list[object]:
    first = database.open()
    setup(first)
    first.close()
    barrier = threading.Barrier(2) if database.engine == "postgresql" else None
    stores = [database.open(clock=meeting_clock(barrier)) for _ in range(2)]

    def attempt(store: SqlStore) -> object:
        try:
            return write(store)
        except Conflict as exc:
            return exc

    try:
        with ThreadPoolExecutor(2) as pool:
            return list(pool.map(attempt, stores))
    finally:
        for store in stores:
            store.close()


def test_two_writers_with_the_same_if_match_one_wins(database: Database) -> None:
    outcomes = race(
        database,
        lambda s: s.create_instance(Instance("vm1", "", ("10.0.0.1",)), "t"),
        lambda s: s.patch_labels("vm1", {"owner": str(id(s))}, "t", expect=1),
    )
    won = [o for o in outcomes if isinstance(o, Instance)]
    lost = [o for o in outcomes if isinstance(o, PreconditionFailed)]
    assert (len(won), len(lost)) == (1, 1), outcomes
    assert "revision 2, not 1" in str(lost[0])
    check = database.open()
    try:
        assert check.get_instance("vm1") == won[0]
        assert [e.action for e in check.list_audit(10).items].count("instance.labels") == 1
    finally:
        check.close()


def test_two_creates_of_one_persona_version_never_both_land(database: Database) -> None:
    outcomes = race(
        database,
        lambda s: s.put_persona("db", '{"a": 0}', "t"),
        lambda s: s.put_persona("db", f'{{"a": {id(s)}}}', "t", expect=1),
    )
    assert sorted(type(o).__name__ for o in outcomes) == ["PersonaVersion", "PreconditionFailed"]
    check = database.open()
    try:
        assert [v.version for v in check.persona_history("db", 10).items] == [2, 1]
    finally:
        check.close()


def test_a_writer_that_keeps_losing_is_told_the_store_is_unavailable(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if database.engine != "postgresql":
        pytest.skip("SQLite never aborts a write for another: writers are one at a time")
    monkeypatch.setattr(pg_database, "RETRIES", 1)
    outcomes = race(
        database,
        lambda s: s.set_context("k", "0", "t"),
        lambda s: _unavailable_or(lambda: s.set_context("k", str(id(s)), "t", expect=1)),
    )
    kinds = sorted(type(o).__name__ for o in outcomes)
    assert kinds == ["ContextEntry", "StoreUnavailable"], outcomes
    error = next(o for o in outcomes if isinstance(o, StoreUnavailable))
    assert "set context key 'k'" in str(error)
    assert "40001" in str(error)


def _unavailable_or(write: Callable[[], object]) -> object:
    try:
        return write()
    except StoreUnavailable as exc:
        return exc
