"""The store suite runs on both engines: ``engine`` is ``sqlite`` (a file in tmp_path) or
``postgresql`` (a fresh database in the session's throwaway cluster)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from netpersona.store.postgres import PostgresStore
from netpersona.store.sql import SqlStore
from netpersona.store.sqlite import SqliteStore

ENGINES = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Database:
    """One test's database, on one engine; each :meth:`open` is another store object on it
    (another process, as far as the database can tell)."""

    engine: str
    url: str

    def open(self, *, clock: Callable[[], float] = time.time) -> SqlStore:
        if self.engine == "sqlite":
            return SqliteStore(self.url.removeprefix("sqlite:///"), clock=clock)
        return PostgresStore(self.url, clock=clock)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def database(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Database]:
    if engine == "sqlite":
        yield Database(engine, f"sqlite:///{tmp_path / 'np.db'}")
        return
    cluster = request.getfixturevalue("pg_cluster")
    with cluster.database() as url:
        yield Database(engine, url)


@pytest.fixture
def store(database: Database) -> Iterator[SqlStore]:
    opened = database.open()
    yield opened
    opened.close()
